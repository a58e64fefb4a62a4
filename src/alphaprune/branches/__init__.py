"""Branches: the cheap parallel replacements of a layer, their sizes and initialisations.

Every branch is a *linear map of the same input* as the layer it replaces. That gives each one an
``equivalent_weight()``: a kernel in the original layer's shape that computes the same output.
The blend uses it to run one convolution with ``α·W + (1−α)·K`` instead of two (see
``blend.py``); the exported student uses the branch's own, physically smaller ``forward``.

Per-layer branch kinds (a layer's plan names one), one module each:

- ``pointwise``: a k×k ``Conv2d`` → a 1×1 ``Conv2d`` reading the original's centre tap, aligned so
  its output has the original's shape for any stride, padding, dilation and groups.
- ``lowrank``: ``Conv2d(k×k, in → r)`` then ``Conv2d(1×1, r → out)``; a ``Linear`` → a rank-r pair.
- ``dwsep``: a k×k ``Conv2d`` → a depthwise k×k conv (one filter per input channel, the original's
  stride, padding and dilation) then a 1×1 conv: about the pointwise cost, with the original's
  receptive field. Its equivalent kernel is ``W[o, i] = P[o, i]·D[i]``.
- ``sparse``: a copy of the layer with a fixed binary mask (``torch.nn.utils.prune``'s reparam).
- ``channels``: a layer that reads channels being removed, those input columns zeroed; at α = 0
  the channels leave every coupled layer (``alphaprune.channels``).

`base` holds what every kind shares (`Branch`, `count_params`); `kinds` the registry of every
kind by name (`BRANCHES`, `build_branch`). This file defines and imports nothing, so that code
that only needs `base` (the fit loop, the teacher's stage) does not depend on the kinds.
"""
