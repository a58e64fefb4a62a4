rule prepare:
    input:
        code=CODE,
    output:
        data=f"{DATA}.pt",
        card=f"{DATA}.json",
    params:
        files=PARAMS_ARGS,
        settings=settings("seed", "data"),
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/prepare.log",
    shell:
        "alphaprune prepare {params.files} --out {output.data} 2> {log}"
