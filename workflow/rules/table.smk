TABLE = "results/table/table.json"
# With latency.table set, every prune plans after the table is measured and reruns when it is
# measured again (as in dvc.yaml, whose matrix cannot name a dependency for some variants only);
# unset, the table job writes a file saying no table was measured, and no prune waits for it.
TABLE_INPUT = TABLE if PARAMS.latency.table is not None else []

if PARAMS.latency.table is None:  # a file saying nothing was measured: no cluster job for it

    localrules:
        table,


rule table:
    """The latency table the prunes of `prune.target: latency` plan from: the params' model timed
    whole, then each layer alone at the widths its channel groups can take (`latency.table.per`),
    in onnxruntime on the CPU. A measuring job
    takes every core, so that nothing runs beside it (the timings are the table)."""
    input:
        code=code("table"),
        params=params_changed("table"),
        card=rules.prepare.output.card,
    output:
        table=TABLE,
        record=record("table"),
    params:
        files=params_files,
    threads: every_core if PARAMS.latency.table is not None else 1
    conda:
        "../envs/alphaprune.yaml"
    log:
        "logs/table.log",
    shell:
        "alphaprune table {params.files} --data {input.card} --out {output.table}"
        " --record {output.record} 2> {log}"
