# Shared by every rule: the validated params, the variant names, the paths, and what keeps
# Snakemake and DVC in step.
import subprocess
import sys
from pathlib import Path

from snakemake.logging import logger

from alphaprune.codedeps import stage_code
from alphaprune.config import ConfigError, load_params, merge_files
from alphaprune.provenance import record_matches, set_trigger, stage_values

if workflow.config_settings.config:  # --config key=value (presets come as --configfile)
    raise WorkflowError(
        "alphaprune commands read params files: use --configfile configs/<preset>.yaml "
        "(or edit params.yaml) instead of --config"
    )
# params.yaml, then any --configfile preset. They are read by alphaprune's own loader (not from
# Snakemake's `config`), so that the rules and the CLI they call resolve exactly the same grid.
PARAM_FILES = ["params.yaml"] + [
    os.path.relpath(f) for f in workflow.overwrite_configfiles if os.path.relpath(f) != "params.yaml"
]
PARAMS_ARGS = " ".join(f"--params {f}" for f in PARAM_FILES)
try:
    PARAMS = load_params(PARAM_FILES)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

VARIANTS = list(PARAMS.variants)
if not VARIANTS:
    raise WorkflowError(f"{' + '.join(PARAM_FILES)}: variants: define at least one variant")
SRC = os.path.relpath(Path(workflow.basedir) / "src")


def code(stage):
    """The source files `alphaprune <stage>` imports: editing one reruns only the stages that
    run it (alphaprune.codedeps; dvc.yaml lists the same files)."""
    return [str(p) for p in stage_code(stage, SRC)]


DATA = f"data/prepared/{PARAMS.data.name}"


RAW = merge_files(PARAM_FILES)  # the values each stage reads, as DVC hashes them


def record(stage, variant=None):
    """Where a stage's job records the params values it ran with (alphaprune --record)."""
    return f"results/params/{stage}.json" if variant is None else f"results/params/{stage}/{variant}.json"


def params_changed(stage):
    """An input for `stage`'s jobs that is newer than their outputs exactly when the params
    the stage reads differ from those its outputs were made with, as the job recorded them,
    whichever tool ran it. (Snakemake's own params trigger reads metadata only Snakemake
    writes: after `dvc repro` it would redo what DVC did.)"""

    def trigger(wildcards):
        variant = wildcards.get("variant")
        stale = not record_matches(record(stage, variant), stage_values(RAW, stage, variant))
        job = [stage, variant] if variant else [stage]
        path = os.path.join(".snakemake", "alphaprune", "params-changed", *job)
        set_trigger(path, stale)
        return path

    return trigger


def record_in_dvc():
    """After Snakemake has brought the whole default pipeline up to date, record it in DVC's
    lock (`dvc commit`), so that `dvc status` agrees and `dvc repro` does not redo the work.
    Skipped where DVC's view would differ from this run's: a preset (DVC reads params.yaml
    only) or part of the pipeline (a target, --until, --omit-from)."""
    if not Path(".dvc").is_dir():
        return  # not a DVC project
    dag = workflow.dag_settings
    partial = set(dag.targets) - {"all"} or dag.until or dag.omit_from
    why = ("this run read presets, and DVC reads params.yaml alone" if PARAM_FILES != ["params.yaml"]
           else "this run made only part of the pipeline" if partial else None)  # fmt: skip
    if why:
        logger.info(f"Not recorded in DVC's lock ({why}); `dvc status` may list stages.")
        return
    done = subprocess.run([sys.executable, "-m", "dvc", "commit", "--force"],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        error = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        logger.warning(f"dvc commit failed, so `dvc status` may list stages: {error[:2]}")
    else:
        logger.info("Recorded in DVC's lock (dvc commit): `dvc status` is up to date.")


onsuccess:
    record_in_dvc()
