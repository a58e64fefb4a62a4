# Shared by every rule: the validated params, the variant names, the paths, and what keeps
# Snakemake and DVC in step.
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from alphaprune.pipeline.params.base import ConfigError
from alphaprune.pipeline.params.loader import merge_files, resolve
from alphaprune.pipeline.provenance.codedeps import STAGES, stage_code
from alphaprune.pipeline.provenance.manifests import write_manifests
from alphaprune.pipeline.provenance.records import record_matches, set_trigger, source_digest, stage_values

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
    RAW = merge_files(PARAM_FILES)  # as DVC hashes them: the values the params records compare
    PARAMS = resolve(RAW, source=" + ".join(PARAM_FILES))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

VARIANTS = list(PARAMS.variants)
if not VARIANTS:
    raise WorkflowError(f"{' + '.join(PARAM_FILES)}: variants: define at least one variant")
# Replicates: a teacher per replicates.teachers seed, and every variant pruned on each teacher
# once per replicates.seeds seed, in results/variants/<variant>/t<teacher>-s<seed>/.
TEACHERS = PARAMS.replicates.teachers
RUNS = PARAMS.replicates.runs()


def every_run(pattern):
    """`pattern` ({variant}, {teacher}, {seed}) for every variant and replicate."""
    return [pattern.format(variant=v, teacher=t, seed=s) for v in VARIANTS for t, s in RUNS]
SRC = os.path.relpath(Path(workflow.basedir) / "src")


def code(stage):
    """The source files `alphaprune <stage>` imports: editing one reruns only the stages that
    run it (alphaprune.pipeline.provenance.codedeps; DVC's stages depend on the same files through
    their manifests, results/code/<stage>.md5)."""
    return [str(p) for p in stage_code(stage, SRC)]


DATA = f"data/prepared/{PARAMS.data.name}"

# A training job (pretrain, prune) runs as runtime.processes processes, one a GPU: it asks for
# as many GPUs, and on SLURM for a task each (srun starts them: alphaprune.pipeline.stages.launch);
# `mpi` tells the SLURM executor that the job starts its own tasks. Several nodes: add
# `nodes` to the rule's resources in the profile.
PROCESSES = PARAMS.runtime.processes
TRAINING = {"gpu": PROCESSES}
if PROCESSES > 1:
    TRAINING |= {"tasks": PROCESSES, "tasks_per_gpu": 1, "mpi": "srun"}



def every_core(wildcards):
    """A job's threads that keep every other job off the machine: all the cores of a local run.
    A cluster run has no total (no --cores): there one thread, the profile's resources
    (cpus_per_task, --exclusive) hold the node. A callable, so that --unlock needs no --cores."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def params_files(wildcards, output):
    """The --params arguments of every command. Taking `output` makes Snakemake count it as
    derived, which its own params trigger leaves out: what the files hold is compared through
    the records instead (params_changed), so a run with a preset then `dvc repro` does not make
    Snakemake redo what DVC just made."""
    return PARAMS_ARGS


def record(stage, job=None):
    """Where a stage's job records the params values it ran with (alphaprune --record); `job`
    names one of a stage's jobs: t{teacher}, or {variant}/t{teacher}-s{seed}."""
    return f"results/params/{stage}.json" if job is None else f"results/params/{stage}/{job}.json"


def params_changed(stage):
    """An input for `stage`'s jobs that is newer than their outputs exactly when the params
    the stage reads differ from those its outputs were made with, as the job recorded them,
    whichever tool ran it. (Snakemake's own params trigger reads metadata only Snakemake
    writes: after `dvc repro` it would redo what DVC did.)

    The trigger files of every job of the grid are written now, as the Snakefile is read:
    Snakemake lists a folder once when it first looks into it, so a file an input function
    wrote there later in the same DAG build would be missing to it (a new variant asked for
    by its three seeds' targets failed with a MissingInputException)."""
    grid = {"pretrain": [(None, t, None) for t in TEACHERS],
            "prune": [(v, t, s) for v in VARIANTS for t, s in RUNS]}
    grid["evaluate"] = grid["prune"]
    made = {}
    for variant, teacher, seed in grid.get(stage, [(None, None, None)]):
        job = _job(variant, teacher, seed)
        made[job] = _set_params_trigger(stage, variant, job)

    def trigger(wildcards):
        variant = wildcards.get("variant")
        job = _job(variant, wildcards.get("teacher"), wildcards.get("seed"))
        return made[job] if job in made else _set_params_trigger(stage, variant, job)

    return trigger


def _job(variant, teacher, seed):
    """A job's name among its stage's: t{teacher}, {variant}/t{teacher}-s{seed}, or None."""
    if teacher is None:
        return None
    return f"t{teacher}" if variant is None else f"{variant}/t{teacher}-s{seed}"


def data_changed():
    """An input of prepare that is newer than its outputs exactly when the bytes under
    data.root differ from those prepare last read (the digest its card holds), whichever tool
    ran it. Snakemake itself would compare times: a `touch`, or a copy without -p, of a CIFAR
    archive would rerun prepare and then the teacher, whose old outputs it deletes first."""
    card = Path(f"{DATA}.json")
    try:
        made = json.loads(card.read_text()).get("source_digest")
    except (OSError, ValueError):
        made = None
    live = source_digest(PARAMS.data.root, cache=Path(".snakemake", "alphaprune", "source-hashes.json"))
    path = os.path.join(".snakemake", "alphaprune", "data-changed", "prepare")
    set_trigger(path, made is None or made != live, card.stat().st_mtime if card.exists() else None)
    return path


def _set_params_trigger(stage, variant, job):
    made_with = record(stage, job)
    stale = not record_matches(made_with, stage_values(RAW, stage, variant))
    path = os.path.join(".snakemake", "alphaprune", "params-changed", stage, *([job] if job else []))
    newer_than = os.path.getmtime(made_with) if os.path.exists(made_with) else None
    set_trigger(path, stale, newer_than)
    return path


def record_in_dvc():
    """Record in DVC's lock (`dvc commit`) every stage of this run's DAG: after a successful
    run Snakemake holds each of them current (made now, or found up to date by its triggers:
    code, input times, the params records), so `dvc status` agrees and `dvc repro` does not
    redo them. Stages outside the DAG (a run of one target, --until) stay as DVC has them.
    Not after a run with a preset, whose params DVC does not read."""
    if not Path(".dvc").is_dir():
        return  # not a DVC project
    if PARAM_FILES != ["params.yaml"]:
        logger.info("Not recorded in DVC's lock: this run read presets, and DVC reads "
                    "params.yaml alone; `dvc status` lists the stages it made.")
        return
    # In pipeline order: committing a stage writes .gitignore files into the folders that the
    # stages after it depend on (results/variants), which must be hashed after that.
    dag = sorted((job for job in workflow.dag.jobs if job.rule.name in STAGES),
                 key=lambda job: (STAGES.index(job.rule.name), dvc_name(job.wildcards)))
    stages = [_dvc_stage(job) for job in dag]
    # DVC's stages depend on their code through manifests, which DVC's `code` stage writes (the
    # Snakefile reads the same files itself): written here, and committed with the run.
    write_manifests(SRC)
    # Naming a stage costs DVC a parse of the whole pipeline (0.8 s each on the tiny test grid,
    # more on a grid of replicates). When the run's DAG is the whole pipeline, everything is
    # committed in one pass; else its last stages with their dependencies (`--with-deps`: a
    # DAG Snakemake builds for some targets holds every job upstream of them, as DVC's does),
    # or, where that is more targets, each stage by name.
    whole = {"prepare", "table", "latency", "plots", "report",
             *(f"{s}@{t}" for s in ("pretrain", "export_teacher") for t in TEACHERS),
             *(f"{s}@{v}-{t}-{seed}" for s in ("prune", "evaluate", "export")
               for v in VARIANTS for t, seed in RUNS)}
    upstream = {dep for job in dag for dep in workflow.dag.dependencies[job]}
    last = sorted(_dvc_stage(job) for job in dag if job not in upstream)
    if set(stages) == whole:
        targets = []  # and the code stage
    elif len(last) < len(stages):
        targets = ["--with-deps", *last]  # the code stage is upstream of every stage
    else:
        targets = ["code", *stages]
    # Committing a cached output may put a fresh copy of it from DVC's cache in its place:
    # the same bytes with a new mtime, which would make the jobs that read it look stale to the
    # next run. Their times are put back.
    times = {f: os.stat(f) for job in workflow.dag.jobs for f in job.output if os.path.isfile(f)}
    done = subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", *targets],
                          capture_output=True, text=True)
    for f, before in times.items():
        with contextlib.suppress(OSError):
            after = os.stat(f)
            if after.st_size == before.st_size and after.st_mtime_ns != before.st_mtime_ns:
                os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    if done.returncode:
        error = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        logger.warning(f"dvc commit failed, so `dvc status` may list stages: {error[:2]}")
    else:
        logger.info(f"Recorded in DVC's lock (dvc commit): the {len(stages)} stages of this run.")


def _dvc_stage(job):
    """DVC's name for a Snakemake job: <stage>, or <stage>@<dvc_name>."""
    name = dvc_name(job.wildcards)
    return job.rule.name + (f"@{name}" if name else "")


def dvc_name(wildcards):
    """The part after @ of DVC's name for a job: <teacher> (foreach), <variant>-<teacher>-<seed>
    (matrix); "" for stages that run once."""
    keys = [k for k in ("variant", "teacher", "seed") if wildcards.get(k) is not None]
    return "-".join(str(wildcards.get(k)) for k in keys)


onsuccess:
    record_in_dvc()
