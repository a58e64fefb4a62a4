"""The allocator: which layers get a branch, and how small, to remove `amount` of the teacher.

`allocator.allocate` is the entry; `plan` holds the `Plan` and what every kind shares (the
candidate layers, the units a target counts in); each kind's allocation is its own module
(`spatial`, `lowrank`, `sparse`, `channels`), so a new allocator is one new file.

`amount` is a fraction of what `target` counts: ``params``, *all* the teacher's parameters
(BatchNorm and biases included), or ``macs``, its multiply-accumulates for one example at the
example's shape (``torch.utils.flop_counter``; a layer's are its weights times the positions it
is applied at, `alphaprune.costs`), or ``latency`` (kind ``channels``), its time on one engine
as a measured table gives it (`latency`: the table, its prediction and the knapsack that
allocates by importance per millisecond saved). Every plan reports both counted fractions. The
achieved fraction of the target is at least `amount` and exceeds it by as little as the branch
kind allows:

- ``pointwise``: k×k convs become 1×1, largest saving first; the last one chosen is the smallest
  that closes the gap. Only if all k×k convs cannot reach the target do linear maps (Linear and
  1×1 convs) get low-rank pairs, sized as in ``lowrank`` to land close to it.
- ``dwsep``: as ``pointwise``, with depthwise k×k + 1×1 pairs in place of the 1×1 convs (ungrouped
  k×k convs only).
- ``lowrank``: every eligible layer keeps the same fraction of its weights (ranks found by
  bisection on that fraction), then single ranks are raised while the target still holds.
- ``sparse``: global magnitude masks over all eligible weights, through
  ``torch.nn.utils.prune.global_unstructured``, removing exactly the needed count (of
  parameters only: a masked layer runs densely, so its MACs do not fall).
- ``channels``: whole channels of the groups `alphaprune.channels` finds, the globally least
  important first (Torch-Pruning's group L2 magnitude, as its global pruning ranks them), the
  fewest that meet the target; with `round_to`, every group keeps a multiple of it, so the
  target is met to within one block of the group that crosses it. The layers that read removed
  channels get branches; the other layers that lose channels (their producers, BatchNorm) are
  listed as `coupled`.
"""
