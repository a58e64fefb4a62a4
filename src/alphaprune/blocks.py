"""Residual blocks, found on any model: every addition ``shortcut(x) + f(x)`` where `f` holds a
layer with weights and `shortcut` none that `f` uses (the identity, an option-A `ChannelMap`,
or a projection such as torchvision's `downsample`). The first brick of a kind that removes
whole blocks (issue 38): at α = 0 a block ``shortcut(x) + α·f(x)`` is its shortcut.

Found generically, on the model's torch.fx graph: for each addition of two tensors, the latest
node both operands depend on is the block's input `x`; the operand whose path from `x` calls
more weighted layers is `f`, the other the shortcut. A block is named by the deepest module that
makes the addition (`layer1.0` in a ResNet, `features.3` in MobileNetV2). A model fx cannot
trace, or one with no such addition, gets an error that says so.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import fx, nn

from alphaprune.errors import UserError


class BlockError(UserError, ValueError):
    """The model's residual blocks cannot be found (it has none, or fx cannot trace it)."""


@dataclass(frozen=True)
class Block:
    """A residual addition: `name` the module holding it, `residual` the weighted layers of
    f (in call order), `shortcut` those of the shortcut (empty: the identity or a map)."""

    name: str
    residual: tuple[str, ...]
    shortcut: tuple[str, ...]


_ADDS = {operator.add, operator.iadd, torch.add}


def find_blocks(model: nn.Module) -> list[Block]:
    """The residual blocks of `model`, in the order its forward pass adds them."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as e:  # fx raises many kinds: data-dependent control flow, unsupported ops
        raise BlockError(
            f"cannot find residual blocks: torch.fx cannot trace {type(model).__name__} "
            f"({type(e).__name__}: {e})"
        ) from e
    nodes = list(graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    modules = dict(model.named_modules())
    ancestors: dict[fx.Node, set[fx.Node]] = {}
    for n in nodes:  # topological: every input's set is known
        ancestors[n] = set().union(*({a} | ancestors[a] for a in n.all_input_nodes))
    blocks = []
    for n in nodes:
        added = (n.op == "call_function" and n.target in _ADDS) or (
            n.op == "call_method" and n.target in ("add", "add_")
        )
        if not added or len(n.args) < 2:
            continue
        a, b = n.args[:2]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            continue
        common = ({a} | ancestors[a]) & ({b} | ancestors[b])
        if not common:
            continue
        x = max(common, key=order.__getitem__)
        paths = [_weighted(({o} | ancestors[o]) - ({x} | ancestors[x]), modules) for o in (a, b)]
        paths = [sorted(p, key=lambda node: order[node]) for p in paths]
        residual, shortcut = sorted(paths, key=len, reverse=True)
        if not residual or len(shortcut) >= len(residual):
            continue  # two branches alike (an inception-style sum), or no layer at all
        layers = tuple(str(m.target) for m in residual), tuple(str(m.target) for m in shortcut)
        blocks.append(Block(_holder(n) or _owner([*layers[0], *layers[1]]), *layers))
    if not blocks:
        raise BlockError(
            f"{type(model).__name__} has no residual blocks: no addition of a layer's input to "
            "a function of it (shortcut(x) + f(x)) where f holds a layer with weights"
        )
    return blocks


def _weighted(path: set[fx.Node], modules: dict[str, nn.Module]) -> list[fx.Node]:
    """The calls of modules with parameters among `path`."""
    return [
        n
        for n in path
        if n.op == "call_module" and any(True for _ in modules[str(n.target)].parameters())
    ]


def _holder(add: fx.Node) -> str | None:
    """The module whose forward makes the addition (fx's record of the call site), if any."""
    stack = add.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else None


def _owner(names: list[str]) -> str:
    """The deepest module name that is a prefix of every name in `names`."""
    parts = [name.split(".") for name in names]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    # a layer's own name is not the block: the block holds more than the one layer
    if len(common) == min(len(p) for p in parts):
        common = common[:-1]
    return ".".join(common)
