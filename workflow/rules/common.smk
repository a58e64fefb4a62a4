# Shared by every rule: the validated params, the variant names, and the paths.
import json
from pathlib import Path

from alphaprune.codedeps import stage_code
from alphaprune.config import ConfigError, load_params

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


def settings(*keys):
    """The params a stage depends on, as JSON: Snakemake reruns a job when they change."""
    dumped = PARAMS.model_dump(mode="json")
    return json.dumps({k: dumped[k] for k in keys}, sort_keys=True)


def variant_settings(wildcards):
    return PARAMS.variant(wildcards.variant).model_dump_json()
