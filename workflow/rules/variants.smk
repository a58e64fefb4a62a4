wildcard_constraints:
    variant="[a-z0-9][a-z0-9_-]*",


rule prune:
    input:
        code=code("prune"),
        params=params_changed("prune"),
        data=rules.prepare.output.data,
        teacher=rules.pretrain.output.model,
        table=TABLE_INPUT,
    output:
        student="results/variants/{variant}/t{teacher}-s{seed}/student.pt",
        history="results/variants/{variant}/t{teacher}-s{seed}/history.csv",
        steps="results/variants/{variant}/t{teacher}-s{seed}/steps.csv",
        record=record("prune", "{variant}/t{teacher}-s{seed}"),
    params:
        files=params_files,
        out=lambda w, output: os.path.dirname(output.student),
    threads: PROCESSES
    # Prunes are the long jobs: started first, they run side by side and the short evaluate
    # and export jobs fill in after them, rather than one prune left running alone at the end.
    priority: 1
    resources:
        **TRAINING,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/prune/{variant}/t{teacher}-s{seed}.log",
    shell:
        "alphaprune prune {params.files} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --data {input.data}"
        " --teacher {input.teacher} --out {params.out} --record {output.record}"
        f" --table {TABLE} 2> {{log}}"


rule evaluate:
    input:
        code=code("evaluate"),
        params=params_changed("evaluate"),
        data=rules.prepare.output.data,
        teacher=rules.pretrain.output.model,
        teacher_metrics=rules.pretrain.output.metrics,
        student=rules.prune.output.student,
        history=rules.prune.output.history,
        steps=rules.prune.output.steps,
    output:
        metrics="results/variants/{variant}/t{teacher}-s{seed}/metrics.json",
        predictions="results/variants/{variant}/t{teacher}-s{seed}/predictions.csv",
        record=record("evaluate", "{variant}/t{teacher}-s{seed}"),
    threads: 1
    resources:
        gpu=1,  # it runs the models on the GPU too, and claims one like the training jobs
    params:
        files=params_files,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/evaluate/{variant}/t{teacher}-s{seed}.log",
    shell:
        "alphaprune evaluate {params.files} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --data {input.data}"
        " --teacher {input.teacher} --teacher-metrics {input.teacher_metrics}"
        " --student {input.student} --history {input.history} --steps {input.steps}"
        " --out {output.metrics} --predictions {output.predictions} --record {output.record}"
        " 2> {log}"


rule export:
    """The student as ONNX, checked against PyTorch on the test split. It reads no params:
    it reruns when its student (or the data, or its code) changes, and only then."""
    input:
        code=code("export"),
        data=rules.prepare.output.data,
        student=rules.prune.output.student,
    output:
        onnx="results/variants/{variant}/t{teacher}-s{seed}/student.onnx",
        check="results/variants/{variant}/t{teacher}-s{seed}/onnx.json",
    threads: 1
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/export/{variant}/t{teacher}-s{seed}.log",
    shell:
        "alphaprune export --model {input.student} --out {output.onnx} --data {input.data}"
        " --json {output.check} 2> {log}"


rule latency:
    """Every student of the grid and its teacher timed in one job, each distinct architecture
    once (twins, and recipes that leave the same layers, share a timing), in turns. The job
    takes every core (and the GPU), so that Snakemake runs nothing beside it: what it measures
    is the models, not the contention (on SLURM, the profile asks for the node --exclusive).
    Its inputs are what dvc.yaml's dependency on results/teacher and results/variants covers,
    every file written there (an evaluation's too: DVC hashes the folders whole), so that both
    tools rerun it alike."""
    input:
        code=code("latency"),
        params=params_changed("latency"),
        teachers=expand(rules.pretrain.output, teacher=TEACHERS),
        teacher_onnx=expand(rules.export_teacher.output, teacher=TEACHERS),
        students=[f for pattern in rules.prune.output for f in every_run(pattern)],
        evaluations=[f for pattern in rules.evaluate.output for f in every_run(pattern)],
        onnx=[f for pattern in rules.export.output for f in every_run(pattern)],
    output:
        latency=directory("results/latency"),
        record=record("latency"),
    params:
        files=params_files,
    threads: every_core
    resources:
        gpu=1,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/latency.log",
    shell:
        "alphaprune latency {params.files} --teacher results/teacher --variants results/variants"
        " --out {output.latency} --record {output.record} 2> {log}"
