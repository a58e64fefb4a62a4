rule plots:
    input:
        code=code("plots"),
        teacher_metrics=rules.pretrain.output.metrics,
        teacher_history=rules.pretrain.output.history,
        metrics=expand(rules.evaluate.output.metrics, variant=VARIANTS),
        histories=expand(rules.prune.output.history, variant=VARIANTS),
        steps=expand(rules.prune.output.steps, variant=VARIANTS),
    output:
        report(
            directory("results/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Figures",
        ),
    params:
        files=PARAMS_ARGS,
        variants=" ".join(VARIANTS),
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/plots.log",
    shell:
        "alphaprune plots {params.files} --teacher results/teacher --variants results/variants"
        " --out {output} 2> {log}"


rule report:
    input:
        code=code("report"),
        teacher_metrics=rules.pretrain.output.metrics,
        metrics=expand(rules.evaluate.output.metrics, variant=VARIANTS),
        plots=rules.plots.output,
    output:
        "results/report.md",
    params:
        files=PARAMS_ARGS,
        variants=" ".join(VARIANTS),
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/report.log",
    shell:
        "alphaprune report {params.files} --teacher results/teacher --variants results/variants"
        " --plots {input.plots} --out {output} 2> {log}"
