wildcard_constraints:
    teacher=r"\d+",
    seed=r"\d+",


rule pretrain:
    input:
        code=code("pretrain"),
        params=params_changed("pretrain"),
        data=rules.prepare.output.data,
    output:
        model="results/teacher/t{teacher}/model.pt",
        history="results/teacher/t{teacher}/history.csv",
        metrics="results/teacher/t{teacher}/metrics.json",
        record=record("pretrain", "t{teacher}"),
    params:
        files=params_files,
        out=lambda w, output: os.path.dirname(output.model),
    threads: max(2, PROCESSES)
    resources:
        **TRAINING,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/pretrain/t{teacher}.log",
    shell:
        "alphaprune pretrain {params.files} --seed {wildcards.teacher} --data {input.data}"
        " --out {params.out}"
        " --record {output.record} 2> {log}"


rule export_teacher:
    """The teacher as ONNX, checked against PyTorch on the test split: what every student of
    it is timed against (latency), exported once rather than in each latency job."""
    input:
        code=code("export_teacher"),
        data=rules.prepare.output.data,
        model=rules.pretrain.output.model,
    output:
        onnx="results/teacher/t{teacher}/model.onnx",
        check="results/teacher/t{teacher}/onnx.json",
    threads: 1
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/export_teacher/t{teacher}.log",
    shell:
        "alphaprune export --model {input.model} --out {output.onnx} --data {input.data}"
        " --json {output.check} 2> {log}"
