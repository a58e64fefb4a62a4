"""sparse: global magnitude masks over every eligible weight (``torch.nn.utils.prune``)."""

from __future__ import annotations

import copy

from torch.nn.utils import prune

from alphaprune.budget.plan import Units


def masks_for(layers, units: Units):
    """Global magnitude masks, from ``torch.nn.utils.prune``, on copies of the layers."""
    weights = sum(m.weight.numel() for _, m in layers)
    most = weights - len(layers)  # every layer keeps at least one weight
    if units.need > most:
        raise units.unreachable(most)
    copies = {n: copy.deepcopy(m) for n, m in layers}
    prune.global_unstructured(
        [(c, "weight") for c in copies.values()],
        pruning_method=prune.L1Unstructured,
        amount=units.need,
    )
    masks = {n: c.weight_mask.detach().clone() for n, c in copies.items()}
    plans = [units.plan(n, m, "sparse", int(masks[n].sum())) for n, m in layers]
    return plans, masks
