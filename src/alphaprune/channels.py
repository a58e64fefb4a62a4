"""Channel groups for `branch: channels`: which channels can be removed together, how much each
is worth, and the narrowing that removes them.

Removing an output channel of a conv removes it from every layer that is coupled to it: its
BatchNorm, every layer that reads it (a conv's or a linear's input columns), and, through
residual additions, every other producer of the same channel. Torch-Pruning's
`DependencyGraph` finds these *groups*; this module uses it for that, for the group importance
(`GroupMagnitudeImportance`, the L2 magnitude) and for the per-module prune functions, on a
*plain* model (a blended one reads as an element-wise op to its tracer).

The CIFAR ResNets' option-A shortcut (subsample, zero-pad the channels) is a `ChannelMap`, a
module Torch-Pruning does not know, so the graph is built with its prune functions
(`MAP_PRUNER`): each stage's residual stream is then a group whose members include the next
stage's shortcut (its inputs) and its own (its outputs).

Where coupling passes through an op the tracer misreads, it does not say so: a zero-pad written
as `F.pad` reads as an element-wise op, and it merges the residual channels on both sides of it
into one wrongly indexed group. So every candidate group is checked numerically
(`channel_groups`): removing some of its channels must give the same outputs as zeroing its
readers' input columns for them, within 1e-9 of the outputs' scale
(max |Δ| ≤ 1e-9·max(1, max |y|)), computed in float64; a group that fails is excluded, with
the reason. In float64 the two differ only by the order of their sums: at most about depth ×
terms per output × 1.1e-16 ≈ 50 × 4608 × 1.1e-16 ≈ 3e-11 of the scale for a 50-layer net of
512-channel 3×3 convs, whatever kernels the CPU picks, while a misread group is off by
percents. (In float32 that margin was 10× on one CPU, and which groups
passed could depend on the machine.)

The student fades the channels out at the readers (`branches.channels`): at α = 0 nothing reads
them, whatever happens to them upstream, so `narrow` removes them exactly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch_pruning.pruner import function as prune_functions

from alphaprune.branches.channels import Channels
from alphaprune.channelmap import ChannelMap, as_conv

TOLERANCE = 1e-9  # pruned vs readers zeroed in float64, relative to the outputs' scale (≥ 1)

READS = ("prune_conv_in_channels", "prune_linear_in_channels", "prune_channel_map_in_channels")
WRITES = ("prune_conv_out_channels", "prune_linear_out_channels")
# a depthwise conv: one filter per channel, its inputs its outputs (one member for both)
TIED = ("prune_depthwise_conv_out_channels", "prune_depthwise_conv_in_channels")


class ChannelMapPruner(prune_functions.BasePruningFunc):
    """Torch-Pruning's prune functions for a `ChannelMap` (a module it does not know): its
    inputs and outputs are pruned apart, like a conv's."""

    TARGET_MODULES = ChannelMap

    def prune_out_channels(self, layer: ChannelMap, idxs: Sequence[int]) -> ChannelMap:
        layer.drop_outputs(idxs)
        return layer

    def prune_in_channels(self, layer: ChannelMap, idxs: Sequence[int]) -> ChannelMap:
        layer.drop_inputs(idxs)
        return layer

    def get_out_channels(self, layer: ChannelMap) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: ChannelMap) -> int:
        return layer.in_channels


MAP_PRUNER = ChannelMapPruner()

# Torch-Pruning's prune functions a narrowing uses, by the name a student's recipe stores.
FUNCTIONS = {
    name: getattr(prune_functions, name)
    for name in (
        "prune_conv_out_channels",
        "prune_conv_in_channels",
        "prune_depthwise_conv_out_channels",
        "prune_depthwise_conv_in_channels",
        "prune_batchnorm_out_channels",
        "prune_linear_out_channels",
        "prune_linear_in_channels",
    )
} | {
    "prune_channel_map_out_channels": MAP_PRUNER.prune_out_channels,
    "prune_channel_map_in_channels": MAP_PRUNER.prune_in_channels,
}


def replay(model: nn.Module, done: Iterable[dict]) -> nn.Module:
    """Apply the record of `narrow` to a model of the same architecture (in place): no tracing,
    only Torch-Pruning's per-module prune functions."""
    for step in done:
        if step["fn"] not in FUNCTIONS:
            raise ValueError(f"unknown prune function {step['fn']!r}")
        FUNCTIONS[step["fn"]](model.get_submodule(step["module"]), list(step["idxs"]))
    return model


@dataclass(frozen=True)
class Member:
    """A module with a dimension coupled to a group: `fn` (a name of FUNCTIONS) prunes it, and
    `columns[c]` are its indices for the group's channel c (a linear after a flatten has one
    per spatial position)."""

    module: str
    fn: str
    columns: tuple[tuple[int, ...], ...]

    @property
    def reads(self) -> bool:
        return self.fn in READS

    @property
    def writes(self) -> bool:
        """Whether the group's channels are its outputs (a conv's or linear's, not a map's)."""
        return self.fn in WRITES

    @property
    def tied(self) -> bool:
        """A depthwise conv: the group's channels are both its inputs and its outputs."""
        return self.fn in TIED

    def per_channel(self) -> int | None:
        """Its indices per channel of the group (a linear after a flatten: one per spatial
        position), or None where channels differ (a reader of part of a split group)."""
        counts = {len(c) for c in self.columns}
        return counts.pop() if len(counts) == 1 else None


@dataclass(frozen=True)
class ChannelGroup:
    """The output channels of `root` and every member coupled to them; `importance` per
    channel (Torch-Pruning's group L2 magnitude: the mean over the group's members, normalised by
    the group's mean, as it ranks), and `summed`, the L2 magnitude summed over the members and
    not normalised (a group that spans more layers weighs more: the stream of a ResNet stage
    against one block's inner width). The two rank a group's own channels alike."""

    root: str
    members: tuple[Member, ...]
    importance: tuple[float, ...]
    summed: tuple[float, ...] = ()

    @property
    def width(self) -> int:
        return len(self.importance)

    @property
    def readers(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.reads)


# ------------------------------------------------------------------------------ the groups
def dependency_graph(model: nn.Module, example: Tensor) -> tp.DependencyGraph:
    """Torch-Pruning's graph of `model`, traced on `example`, with the prune functions of
    `ChannelMap` (`MAP_PRUNER`). It traces through autograd, so it is built with grad on and
    every parameter requiring grad (a frozen layer would be missing from it); their flags are
    restored."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.enable_grad(), as_conv():
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=example, customized_pruners={ChannelMap: MAP_PRUNER}
            )
    finally:
        for p in frozen:
            p.requires_grad_(False)


def _named_groups(model: nn.Module, graph: tp.DependencyGraph, ignored: Iterable[str]):
    """(root name, Torch-Pruning group over all its channels) for every prunable group."""
    names = {m: n for n, m in model.named_modules()}
    ignored_modules = [model.get_submodule(n) for n in ignored]
    for group in graph.get_all_groups(
        ignored_layers=ignored_modules, root_module_types=[nn.Conv2d, nn.Linear]
    ):
        yield names[group[0].dep.target.module], group


def _members(model: nn.Module, group, width: int) -> tuple[list[Member], str | None]:
    """The group's members, or the reason it cannot be faded and removed."""
    names = {m: n for n, m in model.named_modules()}
    members = []
    for item in group.items:
        module, handler = item.dep.target.module, item.dep.handler
        if module not in names:  # an op of the traced graph (add, reshape, ...): no weights
            continue
        fn = next((n for n, f in FUNCTIONS.items() if f == handler), None)
        if fn is None:
            return [], f"holds {type(module).__name__} {names[module]}, which is not supported"
        if (
            isinstance(module, nn.Conv2d)
            and module.groups > 1
            and not module.groups == module.in_channels == module.out_channels
        ):
            # a grouped conv, or a depthwise one with a channel multiplier, which narrowing
            # (Torch-Pruning's prune functions) does not support
            return [], f"holds the grouped conv {names[module]}"
        columns: list[list[int]] = [[] for _ in range(width)]
        for idx, root in zip(item.idxs, item.root_idxs, strict=True):
            columns[root].append(int(idx))
        members.append(Member(names[module], fn, tuple(map(tuple, columns))))
    if not any(m.reads for m in members):
        return [], "nothing reads its channels"
    return members, None


def channel_groups(
    model: nn.Module, example: Tensor, ignored: Sequence[str] = ()
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """The groups of `model` (a plain model: no blends) whose channels can be faded out at their
    readers and removed, and the excluded ones: root name -> why. `ignored` layers keep their
    output channels (Torch-Pruning's `ignored_layers`: a group with one of them is not
    listed)."""
    # on a CPU copy: the float64 check's bound is derived for CPU kernels, and a group whose
    # indices run past a member's channels (below) raises IndexError here, not a device assert
    model = copy.deepcopy(model).cpu().eval()
    example = example.cpu()
    graph = dependency_graph(model, example)
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    magnitude = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="sum", normalizer=None)
    groups, excluded = [], {}
    for root, group in _named_groups(model, graph, ignored):
        width = len(group.items[0].idxs)
        members, reason = _members(model, group, width)
        if reason:
            excluded[root] = reason
            continue
        try:
            scores = importance(group).double().tolist()
            summed = magnitude(group).double().tolist()
        except IndexError:  # its indices run past a member's channels
            excluded[root] = (
                "Torch-Pruning's graph misreads it: its channel indices do not fit its layers "
                "(an op it does not trace, such as a zero-padded shortcut)"
            )
            continue
        groups.append(ChannelGroup(root, tuple(members), tuple(scores), tuple(summed)))
    for root, error in _removal_errors(model, groups, example).items():
        excluded[root] = (
            "Torch-Pruning's graph misreads it: removing its channels "
            + ("breaks the model" if math.isinf(error) else f"changes the outputs by {error:.2g}×")
            + " where zeroing its readers' inputs does not (an op it does not trace, such as a "
            "zero-padded shortcut)"
        )
    return [g for g in groups if g.root not in excluded], excluded


def _removal_errors(
    model: nn.Module, groups: Sequence[ChannelGroup], example: Tensor
) -> dict[str, float]:
    """Root -> largest |Δ output| for each group whose removal differs from zeroing its readers'
    input columns by more than TOLERANCE (relative to the outputs' scale; inf: the narrowed
    model fails). Every other channel of each group is removed, group after group on one
    narrowed copy (one trace, and one more after each failure) against one zeroed copy."""
    base = copy.deepcopy(model).double().eval()
    example = example.double()
    x = torch.randn_like(example)
    zeroed, pruned = copy.deepcopy(base), copy.deepcopy(base)
    graph, done, failed = dependency_graph(pruned, example), [], {}
    for g in groups:
        removed = list(range(0, g.width, 2))[: g.width - 1] or [0]
        readers = {r.module: zeroed.get_submodule(r.module).weight for r in g.readers}
        before = {name: w.detach().clone() for name, w in readers.items()}
        with torch.no_grad():
            for r in g.readers:
                readers[r.module][:, [i for c in removed for i in r.columns[c]]] = 0
        try:
            step = narrow(pruned, {g.root: removed}, example, graph)
            with torch.no_grad():
                want = zeroed(x)
                error = float((pruned(x) - want).abs().max() / want.abs().max().clamp_min(1))
        except RuntimeError:  # the narrowed model no longer runs: shapes do not match
            step, error = [], math.inf
        if error <= TOLERANCE:
            done += step
            continue
        failed[g.root] = error
        with torch.no_grad():
            for name, w in readers.items():
                w.copy_(before[name])
        pruned = replay(copy.deepcopy(base), done)
        graph = dependency_graph(pruned, example)
    return failed


# ------------------------------------------------------------------------------ narrowing
def narrow(
    model: nn.Module,
    removed: dict[str, Sequence[int]],
    example: Tensor,
    graph: tp.DependencyGraph | None = None,
) -> list[dict]:
    """Remove the channels `removed` (root name -> its output channels) from every module
    coupled to them, in place, through Torch-Pruning's graph of `model` (a plain model; `graph`
    if it has been traced already); return what was done, module by module ({module, fn,
    idxs}), for `replay`."""
    graph = graph or dependency_graph(model, example)
    names = {m: n for n, m in model.named_modules()}
    done = []
    for root, idxs in removed.items():
        if not len(idxs):
            continue
        module = model.get_submodule(root)
        pruner = graph.get_pruner_of_module(module)
        group = graph.get_pruning_group(module, pruner.prune_out_channels, list(map(int, idxs)))
        for item in group.items:
            target = item.dep.target.module
            fn = next((n for n, f in FUNCTIONS.items() if f == item.dep.handler), None)
            if target in names and fn is not None:
                done.append({"module": names[target], "fn": fn, "idxs": sorted(item.idxs)})
        group.prune()
    return done


def narrow_student(
    model: nn.Module, removed: dict[str, Sequence[int]], example: Tensor
) -> list[dict]:
    """The collapsed student of a `channels` plan made physically narrower, in place: each
    `Channels` branch becomes its plain layer, then `narrow` removes the channels; what trained
    before trains after (Torch-Pruning's new parameters would all train). Returns the record."""
    for name, module in list(model.named_modules()):
        if isinstance(module, Channels):
            model.set_submodule(name, module.deployable())
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    done = narrow(model, removed, example)
    for n, p in model.named_parameters():
        p.requires_grad_(n in trains)
    return done
