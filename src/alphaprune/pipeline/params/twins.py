"""One-shot twins: what the α anneal buys.

The twin of an annealed recipe is the same recipe with α = 0 from the start (`schedule:
{kind: oneshot}`): the same branch kind, init, trainables, BatchNorm handling, loss,
augmentation, optimizer and epoch budget, all of it spent fine-tuning the student with the
fine-tune's lr schedule (a cosine from `finetune_lr`, else `optimizer.lr`). A recipe that does
not beat its twin gets nothing from fading the originals out.

A grid declares a twin as a variant of its own (DVC's `matrix` runs the variants params.yaml
names). A YAML merge key, in the file that defines the variants, keeps it from drifting from its
recipe:

    variants:
      adapt: &adapt {branch: lowrank, init: lsq, trainable: student}
      adapt_oneshot: {<<: *adapt, schedule: {kind: oneshot}}

The report pairs each annealed variant with a variant that trains as its twin does
(`trains_as`), whatever either is called, and names the annealed ones that have none.
"""

from __future__ import annotations

from typing import Any

from alphaprune.pipeline.params.recipe import AdvanceConfig, OneshotSchedule, PruneConfig
from alphaprune.pipeline.params.schema import Params

ONESHOT = OneshotSchedule(kind="oneshot")


def annealed(cfg: PruneConfig) -> bool:
    """Whether `cfg` fades the originals out: its schedule has an α above 0 (a `step` schedule
    of [0.0] is one-shot whatever its kind)."""
    return any(a > 0 for a in cfg.alphas())


def twin(cfg: PruneConfig) -> PruneConfig:
    """`cfg` with α = 0 from the start."""
    return cfg.model_copy(update={"schedule": ONESHOT})


def trains_as(cfg: PruneConfig) -> dict[str, Any]:
    """`cfg` as the fit runs it, so that two recipes that train alike compare equal (tests in
    test_fit check that recipes this calls equal train bit for bit alike). `calibration_size`
    counts only for `init: lsq` and for branch `blocks` (the batch that chooses the blocks), and
    `init` not for `blocks`. A one-shot recipe has only the final step: the keys that act
    while α > 0 (`advance`, `layer_distill`, `finetune_epochs`) do nothing, what trains is
    `finetune_trainable` (else `trainable`; `all` is `student`, the originals being dropped
    before the first batch), and the lr is the fine-tune's cosine from `finetune_lr` (else
    `optimizer.lr`), which is what `lr_schedule: cosine` gives a one-shot recipe too."""
    values = cfg.model_dump(mode="json")
    if cfg.init != "lsq" and cfg.branch not in ("blocks", "blocks+channels"):
        values["calibration_size"] = None
    if cfg.branch == "blocks":  # a block has nothing to initialise (its shortcut is the teacher's)
        values["init"] = None
    if annealed(cfg):
        return values
    values["optimizer"]["lr"] = cfg.finetune_lr or cfg.optimizer.lr
    trains = cfg.finetune_trainable or cfg.trainable
    return values | {
        "schedule": ONESHOT.model_dump(mode="json"),
        "advance": AdvanceConfig().model_dump(mode="json"),
        "layer_distill": 0.0,
        "finetune_epochs": None,
        "trainable": "student" if trains == "all" else trains,
        "finetune_trainable": None,
        "finetune_lr": None,
        "lr_schedule": "restart",
    }


def pairs(params: Params) -> dict[str, str | None]:
    """Every annealed variant -> the first variant that trains as its twin, or None."""
    oneshot = {name: trains_as(cfg) for name, cfg in params.variants.items() if not annealed(cfg)}
    out: dict[str, str | None] = {}
    for name, cfg in params.variants.items():
        if annealed(cfg):
            wanted = trains_as(twin(cfg))
            out[name] = next((n for n, v in oneshot.items() if v == wanted), None)
    return out


def declaration(name: str) -> str:
    """The params.yaml line that declares `name`'s twin (its recipe anchored as `&name`)."""
    return f"{name}_oneshot: {{<<: *{name}, schedule: {{kind: oneshot}}}}"
