"""Residual blocks, found on any model: every addition ``shortcut(x) + f(x)`` where `f` holds a
layer with weights and `shortcut` none that `f` uses (the identity, an option-A `ChannelMap`,
or a projection such as torchvision's `downsample`); and kind `blocks`, which removes them: a
block blended with what it is once dropped (`BlockBlend`: ``α·block(x) + (1−α)·shortcut(x)``),
at α = 0 its shortcut (`shortcut_module`, `drop`). Which blocks go: `budget.blocks`.

Found generically, on the model's torch.fx graph: for each addition of two tensors, the latest
node both operands depend on is the block's input `x`; the operand whose path from `x` calls
more weighted layers is `f`, the other the shortcut. A block is named by the deepest module that
makes the addition (`layer1.0` in a ResNet, `features.3` in MobileNetV2); it can be dropped when
that module's own forward makes that one addition: its graph, with the addition replaced by the
shortcut's operand and what only f used removed, is the dropped block. A model fx cannot trace,
or one with no such addition, gets an error that says so.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from alphaprune.blend import Blend
from alphaprune.channelmap import ChannelMap
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
    graph = _trace(model).graph
    modules = dict(model.named_modules())
    blocks = []
    for add, residual, shortcut, _ in _residual_adds(graph, modules):
        layers = tuple(str(m.target) for m in residual), tuple(str(m.target) for m in shortcut)
        blocks.append(Block(_holder(add) or _owner([*layers[0], *layers[1]]), *layers))
    if not blocks:
        raise BlockError(
            f"{type(model).__name__} has no residual blocks: no addition of a layer's input to "
            "a function of it (shortcut(x) + f(x)) where f holds a layer with weights"
        )
    return blocks


class _Tracer(fx.Tracer):
    """fx's tracer, with the option-A `ChannelMap` kept a module (a leaf): a dropped block's
    shortcut then still calls it, so Torch-Pruning's graph prunes through it with its own
    pruner (`channels.MAP_PRUNER`) rather than meeting its operations inlined."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, ChannelMap) or super().is_leaf_module(m, module_qualified_name)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        tracer = _Tracer()
        graph = tracer.trace(model)
        return fx.GraphModule(tracer.root, graph, type(model).__name__)
    except Exception as e:  # fx raises many kinds: data-dependent control flow, unsupported ops
        raise BlockError(
            f"cannot find residual blocks: torch.fx cannot trace {type(model).__name__} "
            f"({type(e).__name__}: {e})"
        ) from e


def _residual_adds(graph: fx.Graph, modules: dict[str, nn.Module]):
    """Per residual addition of `graph`: (the add node, the weighted calls of f, those of the
    shortcut, the shortcut's operand node)."""
    nodes = list(graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    ancestors: dict[fx.Node, set[fx.Node]] = {}
    for n in nodes:  # topological: every input's set is known
        ancestors[n] = set().union(*({a} | ancestors[a] for a in n.all_input_nodes))
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
        (residual, _), (shortcut, operand) = sorted(
            zip(paths, (a, b), strict=True), key=lambda po: len(po[0]), reverse=True
        )
        if not residual or len(shortcut) >= len(residual):
            continue  # two branches alike (an inception-style sum), or no layer at all
        yield n, residual, shortcut, operand


# ------------------------------------------------------------------------- dropping a block
def shortcut_module(block: nn.Module) -> fx.GraphModule:
    """What `block` (a module whose own forward makes one residual addition) is once dropped:
    its forward with f removed, so ``shortcut(x)`` and whatever follows the addition (a ResNet
    block's ReLU). A copy: a projection shortcut's layers are the block's, copied, and what
    only f used (its layers, a parameter of the block's own) removed; in-place operations made
    out-of-place (the identity's ReLU would otherwise write into the block's input); a block
    whose dropped form would still write into its input (a call with no out-of-place twin) is
    refused. Traced: state read in the forward (a flag, `self.training` passed to a function)
    is fixed as it was when traced; a write into the input whose result nothing reads is
    dropped with f (fx removes unread calls), so the shortcut reads the input as it came."""
    gm = _trace(copy.deepcopy(block))
    adds = list(_residual_adds(gm.graph, dict(gm.named_modules())))
    if len(adds) != 1:
        raise BlockError(
            f"{type(block).__name__} makes {len(adds)} residual additions in its forward, not "
            "one: it cannot be dropped as one block"
        )
    ((add, _, _, operand),) = adds
    add.replace_all_uses_with(operand)
    gm.graph.erase_node(add)
    gm.graph.eliminate_dead_code()
    for node in gm.graph.nodes:  # what follows the addition now reads the block's input
        if node.kwargs.get("inplace"):
            node.kwargs = {**node.kwargs, "inplace": False}
        if (
            node.op == "call_method"
            and node.target.endswith("_")
            and not node.target.endswith("__")
            and callable(getattr(Tensor, node.target[:-1], None))  # x.zero_(): no x.zero()
        ):
            node.target = node.target[:-1]  # x.relu_() -> x.relu()
        elif node.op == "call_function" and node.target in _OUT_OF_PLACE:
            node.target = _OUT_OF_PLACE[node.target]
    gm.delete_all_unused_submodules()
    for module in gm.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    # parameters and buffers the block holds itself (a layer scale), used by f only
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    for name in [n for n, _ in gm.named_parameters(recurse=False)] + [
        n for n, _ in gm.named_buffers(recurse=False)
    ]:
        if name not in used:
            delattr(gm, name)
    gm.recompile()
    if writes_input(gm):  # an in-place function with no twin in _OUT_OF_PLACE (torch.clamp_)
        raise BlockError(
            f"{type(block).__name__} writes into its input in a way its dropped form would "
            "keep doing: it cannot be dropped as one block"
        )
    return gm


_OUT_OF_PLACE = {
    torch.relu_: torch.relu,
    torch.nn.functional.relu_: torch.nn.functional.relu,
    operator.iadd: operator.add,
    operator.imul: operator.mul,
}


# what may return its input or a view of it (a write into it writes the input)
_VIEW_METHODS = {
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "transpose", "swapaxes",
    "movedim", "permute", "squeeze", "unsqueeze", "expand", "expand_as", "narrow", "select",
    "diagonal", "as_strided", "unfold", "chunk", "split", "tensor_split", "unbind", "t",
    "contiguous", "detach", "to", "type", "type_as", "float", "double", "half", "__getitem__",
}  # fmt: skip
_VIEW_FUNCTIONS = {
    torch.flatten, torch.unflatten, torch.reshape, torch.transpose, torch.swapaxes,
    torch.movedim, torch.permute, torch.squeeze, torch.unsqueeze, torch.narrow, torch.select,
    torch.diagonal, torch.as_strided, torch.chunk, torch.split, torch.tensor_split, torch.unbind,
    torch.t, operator.getitem, getattr,
}  # fmt: skip
_VIEW_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout)  # Dropout: in eval


def writes_input(block: nn.Module) -> bool:
    """Whether `block`'s traced graph writes into its input: an in-place operation (a method
    or function ending in ``_``, an item assigned, ``inplace=True``, a module built in place,
    an ``out=``) on the input or on what may be a view of it (the views listed above). For a
    `fx.GraphModule`, what its code does, to those lists; for another module, what fx records:
    ``x += y`` on a tensor is traced as ``x + y`` (so `BlockBlend` runs every block on a copy of
    its input). True where fx cannot trace it."""
    try:
        gm = fx.symbolic_trace(block)
    except Exception:  # fx raises many kinds
        return True
    aliases = {n for n in gm.graph.nodes if n.op == "placeholder"}
    for node in gm.graph.nodes:  # in order: a view is met before what reads it
        written = node.args[0] if node.args else node.kwargs.get("input", node.kwargs.get("self"))
        out = node.kwargs.get("out")
        if out is not None and out in aliases:  # `torch.add(a, b, out=x)`
            return True
        if written not in aliases:
            continue
        if _in_place(node, gm):
            return True
        if (
            (node.op == "call_method" and node.target in _VIEW_METHODS)
            or (node.op == "call_function" and node.target in _VIEW_FUNCTIONS)
            or (
                node.op == "call_module"
                and isinstance(gm.get_submodule(str(node.target)), _VIEW_MODULES)
            )
        ):
            aliases.add(node)
    return False


def _in_place(node: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether `node` writes into its first argument."""
    if node.kwargs.get("inplace"):
        return True
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        in_place_name = name.endswith("_") and not name.endswith("__")  # torch.relu_
        return node.target in _OUT_OF_PLACE or node.target in _WRITES or in_place_name
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(str(node.target)), "inplace", False))
    return False


_WRITES = {
    operator.setitem, operator.iadd, operator.isub, operator.imul, operator.itruediv,
    operator.ifloordiv, operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor,
    operator.ilshift, operator.irshift, operator.imatmul,
}  # fmt: skip


def removable_blocks(model: nn.Module) -> list[Block]:
    """The blocks of `model` that can be dropped as a module: those whose addition is made by a
    module of their own (`Block.name`) with that one addition in its forward."""
    return list(removable(model))


def removable(model: nn.Module) -> dict[Block, fx.GraphModule]:
    """`removable_blocks`, each with what it is once dropped (`shortcut_module`)."""
    found = {}
    for block in find_blocks(model):
        if not block.name:
            continue  # the model's own forward adds: no module to swap for its shortcut
        try:
            found[block] = shortcut_module(model.get_submodule(block.name))
        except BlockError:
            continue
    return found


class BlockBlend(Blend):
    """``α·block(x) + (1−α)·shortcut(x)``: a residual block blended with what it is once dropped
    (`shortcut_module`), as `blend.Blend` blends a layer with its branch, so α, what trains,
    layer-wise distillation and `blend.collapse` treat both alike. Where the addition ends the
    block this is ``shortcut(x) + α·f(x)``; after a ReLU it blends the two outputs instead."""

    def __init__(self, block: nn.Module, shortcut: nn.Module):
        nn.Module.__init__(self)
        self.original = block
        self.branch = shortcut
        device = next(block.parameters()).device
        self.register_buffer("alpha", torch.ones((), device=device))
        self.distill = False
        self.distill_term: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        # the shortcut first (it changes nothing in place); the block on a copy, since a block
        # may add to its input in place (`x += f(x)`, which fx traces as `x + f(x)`: a copy
        # only where needed would watch the version counter; measured on a training step of
        # ResNet-20 with 5 faded blocks on the CPU, the copies cost nothing to see: 300-306 ms
        # a step with them, 295-313 without)
        out = self.branch(x)
        target = self.original(x.clone())
        if self.distill and self.training:
            goal = target.detach()
            self.distill_term = (out - goal).pow(2).mean() / goal.pow(2).mean().clamp_min(1e-12)
        return torch.lerp(out, target, self.alpha)


def insert_blends(model: nn.Module, names: list[str]) -> nn.Module:
    """Each named block blended with its shortcut (in place; returns `model`), at α = 1."""
    for name in names:
        block = model.get_submodule(name)
        model.set_submodule(name, BlockBlend(block, shortcut_module(block)))
    return model


def drop(model: nn.Module, names: list[str]) -> nn.Module:
    """Each named block replaced by its shortcut (in place; returns `model`): the student a
    block fade leaves at α = 0, as a model file's recipe rebuilds it."""
    for name in names:
        model.set_submodule(name, shortcut_module(model.get_submodule(name)))
    return model


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
