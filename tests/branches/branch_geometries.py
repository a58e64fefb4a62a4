"""Conv geometries the branch tests run through: kernel, stride, padding, dilation, groups."""

from __future__ import annotations

import itertools

GEOMETRIES = [
    (k, s, p, d, g)
    for k, s, p, d, g in itertools.product(
        [2, 3, 5], [1, 2], [0, 1, 2, "same", "valid"], [1, 2], [1, 2]
    )
    if not (p == "same" and s != 1)
]
