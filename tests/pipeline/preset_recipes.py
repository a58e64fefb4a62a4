"""The recipes of the CIFAR-10 presets whose results docs/results.md reports, resolved over
params.yaml, kept in preset_recipes.json: a test fails when one changes, so that no table there
silently changes meaning (e.g. when params.yaml's defaults do). After a deliberate change,
rewrite the file with `python tests/pipeline/preset_recipes.py` and say why in the commit."""

from __future__ import annotations

import json
from pathlib import Path

from alphaprune.pipeline.params.loader import load_params

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_suffix(".json")
# each stack as docs/results.md ran it (configs/shared-jpeg.yaml changes no recipe)
STACKS = {
    "cpu": ["cifar10-cpu"],
    "ablation": ["cifar10-cpu", "cifar10-ablation"],
    "long": ["cifar10-cpu", "cifar10-long"],
    "screen": ["cifar10-cpu", "cifar10-long", "cifar10-screen"],
    "harder": ["cifar10-cpu", "cifar10-long", "cifar10-harder"],
    "channels": ["cifar10-cpu", "cifar10-long", "cifar10-channels"],
    "finetune": ["cifar10-cpu", "cifar10-finetune"],
    "latency": ["cifar10-cpu", "cifar10-latency"],
    "stream": ["cifar10-cpu", "cifar10-stream"],
    "front": ["cifar10-cpu", "cifar10-front"],
    "blocks": ["cifar10-cpu", "cifar10-blocks"],
    "speed": ["cifar10-cpu", "cifar10-speed"],
    "vgg11-speed": ["cifar10-cpu", "cifar10-vgg11-speed"],
}


def resolved() -> dict[str, dict[str, dict]]:
    """stack -> variant -> its full recipe."""
    out = {}
    for name, presets in STACKS.items():
        files = [REPO / "params.yaml"] + [REPO / "configs" / f"{p}.yaml" for p in presets]
        params = load_params(files)
        out[name] = {v: cfg.model_dump(mode="json") for v, cfg in params.variants.items()}
    return out


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(resolved(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
