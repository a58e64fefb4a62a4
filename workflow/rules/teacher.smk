rule pretrain:
    input:
        code=code("pretrain"),
        params=params_changed("pretrain"),
        data=rules.prepare.output.data,
    output:
        model="results/teacher/model.pt",
        history="results/teacher/history.csv",
        metrics="results/teacher/metrics.json",
        record=record("pretrain"),
    params:
        files=params_files,
        out=lambda w, output: os.path.dirname(output.model),
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/pretrain.log",
    shell:
        "alphaprune pretrain {params.files} --data {input.data} --out {params.out}"
        " --record {output.record} 2> {log}"
