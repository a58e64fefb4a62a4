"""`allocate`: the plan for a branch kind, by the allocation its kind names (`Branch.allocation`):
spatial, rank, mask or channels, each its own module; kind `blocks`, whole residual blocks
(`budget.blocks`); and `blocks+channels`, both in one student (`budget.blocks_channels`)."""

from __future__ import annotations

from torch import Tensor, nn

from alphaprune.branches.base import count_params
from alphaprune.branches.kinds import BRANCHES
from alphaprune.budget import blocks, blocks_channels, channels, lowrank, sparse, spatial
from alphaprune.budget.channels import DEFAULT_RANKING
from alphaprune.budget.latency_table import LatencyTable
from alphaprune.budget.plan import TARGETS, BudgetError, Plan, Units, candidates
from alphaprune.costs import count_macs, layer_positions


def allocate(
    model: nn.Module,
    kind: str,
    amount: float,
    example: Tensor,
    exclude: list[str] | None = None,
    round_to: int = 1,
    target: str = "params",
    *,
    teacher_macs: int | None = None,
    table: LatencyTable | None = None,
    ranking: str = DEFAULT_RANKING,
    dropped_blocks: int | None = None,
) -> Plan:
    """Plan branches that remove at least `amount` of `model`'s parameters (`target` "params")
    or of its MACs for one example of `example`'s shape ("macs"); `round_to`: the channel block
    of kind `channels`; `teacher_macs`: the model's MACs for one example if known (a model file
    records them), else counted with `torch.utils.flop_counter` (whose first use imports
    `torch._dynamo`: 1.5 s a process). Target "latency" (kinds `channels` and
    `blocks+channels`): `amount` of the time `table` measured for the teacher on its engine
    (`budget.latency_table`), the channels chosen by `ranking` (`budget.channels.allocate`).
    `dropped_blocks`: kind `blocks+channels`, how many blocks go (None: the allocator's split)."""
    if not 0 < amount < 1:
        raise BudgetError(f"amount must be in (0, 1), got {amount}")
    if target not in TARGETS:
        raise BudgetError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if dropped_blocks is not None and kind != blocks_channels.KIND:
        raise BudgetError(
            f"dropped_blocks applies to branch '{blocks_channels.KIND}' only, not {kind!r}"
        )
    if kind == blocks.KIND:
        if target == "latency":
            raise BudgetError(
                "target 'latency' is planned for branches 'channels' and 'blocks+channels' only, "
                "not 'blocks' (use 'blocks+channels', which drops blocks alone where they save "
                "the time, or target 'params' or 'macs' and measure the speed after)"
            )
        positions = layer_positions(model, example)
        macs = count_macs(model, example) if teacher_macs is None else teacher_macs
        units = Units(kind, amount, target, positions, count_params(model), macs)
        return blocks.allocate(model, example, units, exclude)
    if kind == blocks_channels.KIND:
        positions = layer_positions(model, example[:1])
        macs = count_macs(model, example[:1]) if teacher_macs is None else teacher_macs
        units = Units(kind, amount, target, positions, count_params(model), macs)
        return blocks_channels.allocate(
            model, example, units, exclude, round_to, table, ranking, dropped_blocks
        )
    branch = BRANCHES.lookup(kind)
    if target == "macs" and branch.allocation == "mask":
        raise BudgetError(
            f"target 'macs' cannot be met with branch {kind!r}: a masked layer still runs "
            "densely, so its MACs do not fall (use target 'params', or a structured branch)"
        )
    if target == "latency" and branch.allocation != "channels":
        raise BudgetError(
            f"target 'latency' is planned for branches 'channels' and 'blocks+channels' only, "
            f"not {kind!r} (a latency "
            "table times narrower channels; use target 'params' or 'macs')"
        )
    positions = layer_positions(model, example)
    macs = count_macs(model, example) if teacher_macs is None else teacher_macs
    units = Units(kind, amount, target, positions, count_params(model), macs)
    layers, excluded = candidates(model, exclude, list(positions))
    eligible = [(n, m) for n, m in layers if branch.eligible(m)]
    if branch.allocation == "spatial":
        chosen, masks = spatial.allocate(eligible, layers, units), {}
    elif branch.allocation == "rank":
        chosen, masks = lowrank.ranks_for(eligible, units.need, units), {}
    elif branch.allocation == "mask":
        chosen, masks = sparse.masks_for(eligible, units)
    elif branch.allocation == "channels":
        return channels.allocate(model, example, excluded, units, round_to, table, ranking)
    else:
        raise ValueError(f"branch kind {kind!r}: unknown allocation {branch.allocation!r}")
    return units.finish(chosen, excluded, masks)
