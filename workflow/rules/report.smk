rule plots:
    input:
        code=code("plots"),
        params=params_changed("plots"),
        teacher_metrics=rules.pretrain.output.metrics,
        teacher_history=rules.pretrain.output.history,
        metrics=expand(rules.evaluate.output.metrics, variant=VARIANTS),
        histories=expand(rules.prune.output.history, variant=VARIANTS),
        steps=expand(rules.prune.output.steps, variant=VARIANTS),
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
        " --out {output.plots} --record {output.record} 2> {log}"


rule report:
    input:
        code=code("report"),
        params=params_changed("report"),
        teacher_metrics=rules.pretrain.output.metrics,
        metrics=expand(rules.evaluate.output.metrics, variant=VARIANTS),
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
        " --plots {input.plots} --out {output.report} --summary {output.summary}"
        " --record {output.record} 2> {log}"
