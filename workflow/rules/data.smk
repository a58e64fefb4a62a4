rule prepare:
    input:
        code=code("prepare"),
        params=params_changed("prepare"),
        # The raw files (a folder or archive; for digits a placeholder folder), by content, as
        # dvc.yaml's dependency on the same path: editing a byte reruns prepare; a touch or a
        # copy without -p does not.
        raw=data_changed(),
    output:
        data=f"{DATA}.pt",
        card=f"{DATA}.json",
        record=record("prepare"),
    params:
        files=params_files,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/prepare.log",
    shell:
        "alphaprune prepare {params.files} --out {output.data} --record {output.record} 2> {log}"
