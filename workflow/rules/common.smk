# Shared by every rule: the validated params, the variant names, and the paths.
import json
from pathlib import Path

from alphaprune.config import ConfigError, resolve

if workflow.config_settings.overwrite_config:
    raise WorkflowError(
        "alphaprune commands read params files: use --configfile configs/<preset>.yaml "
        "(or edit params.yaml) instead of --config"
    )
try:
    PARAMS = resolve(config, "params.yaml")
except ConfigError as err:
    raise WorkflowError(str(err)) from None

VARIANTS = list(PARAMS.variants)
if not VARIANTS:
    raise WorkflowError("params.yaml: variants: define at least one variant")
# params.yaml, then any --configfile preset, merged in this order by the CLI as by Snakemake.
PARAM_FILES = ["params.yaml"] + [
    os.path.relpath(f) for f in workflow.overwrite_configfiles if os.path.relpath(f) != "params.yaml"
]
PARAMS_ARGS = " ".join(f"--params {f}" for f in PARAM_FILES)
CODE = sorted(str(p) for p in Path("src/alphaprune").glob("*.py"))
DATA = f"data/prepared/{PARAMS.data.name}"


def settings(*keys):
    """The params a stage depends on, as JSON: Snakemake reruns a job when they change."""
    dumped = PARAMS.model_dump(mode="json")
    return json.dumps({k: dumped[k] for k in keys}, sort_keys=True)


def variant_settings(wildcards):
    return PARAMS.variant(wildcards.variant).model_dump_json()
