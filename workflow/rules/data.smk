rule prepare:
    input:
        code=code("prepare"),
        params=params_changed("prepare"),
        # The raw files (a folder or archive; for digits a placeholder folder): editing them
        # reruns prepare. dvc.yaml lists the same path.
        raw=PARAMS.data.root,
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
