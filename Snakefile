# alphaprune: prepare -> pretrain (-> export_teacher) (table) -> prune@variant -> evaluate, export
# -> latency @variant -> plots -> report.
# The same stages, commands and paths as dvc.yaml (a test checks this).
configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/table.smk"
include: "workflow/rules/variants.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        rules.report.output,
        rules.table.output.table,  # the prunes take it only where a table is measured
    default_target: True
