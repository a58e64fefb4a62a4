rule pretrain:
    input:
        code=code("pretrain"),
        data=rules.prepare.output.data,
    output:
        model="results/teacher/model.pt",
        history="results/teacher/history.csv",
        metrics="results/teacher/metrics.json",
    params:
        files=PARAMS_ARGS,
        settings=settings("seed", "model", "teacher", "runtime"),
        out=lambda w, output: os.path.dirname(output.model),
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/pretrain.log",
    shell:
        "alphaprune pretrain {params.files} --data {input.data} --out {params.out} 2> {log}"
