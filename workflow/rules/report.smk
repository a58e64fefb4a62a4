rule plots:
    input:
        code=code("plots"),
        params=params_changed("plots"),
        teacher_metrics=expand(rules.pretrain.output.metrics, teacher=TEACHERS),
        teacher_history=expand(rules.pretrain.output.history, teacher=TEACHERS),
        metrics=every_run(rules.evaluate.output.metrics),
        predictions=every_run(rules.evaluate.output.predictions),
        histories=every_run(rules.prune.output.history),
        steps=every_run(rules.prune.output.steps),
        onnx_checks=every_run(rules.export.output.check),
        latency=rules.latency.output.latency,
    output:
        plots=report(
            directory("results/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Figures",
        ),
        record=record("plots"),
    params:
        files=params_files,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/plots.log",
    shell:
        "alphaprune plots {params.files} --teacher results/teacher --variants results/variants"
        " --latency {input.latency} --out {output.plots} --record {output.record} 2> {log}"


rule report:
    input:
        code=code("report"),
        params=params_changed("report"),
        teacher_metrics=expand(rules.pretrain.output.metrics, teacher=TEACHERS),
        metrics=every_run(rules.evaluate.output.metrics),
        predictions=every_run(rules.evaluate.output.predictions),
        onnx_checks=every_run(rules.export.output.check),
        latency=rules.latency.output.latency,
        plots=rules.plots.output.plots,
    output:
        report="results/report.md",
        summary="results/summary.json",
        record=record("report"),
    params:
        files=params_files,
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/report.log",
    shell:
        "alphaprune report {params.files} --teacher results/teacher --variants results/variants"
        " --latency {input.latency} --plots {input.plots} --out {output.report}"
        " --summary {output.summary}"
        " --record {output.record} 2> {log}"
