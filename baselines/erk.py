"""Erdős–Rényi-Kernel (ERK) layer densities, as DiSparse-dynamic initialises its masks (METHODS_SPEC §2.5).

Each layer's density is proportional to ``(Σ dims / Π dims) ** power`` (power 0.9 in the official code), with
one scale ε chosen so that the densities average to the target over all layers, count-weighted. A layer
whose density would exceed 1 is made dense and ε is solved again over the rest; the loop ends when no
density exceeds 1. Backbone and heads are treated jointly, as in the official code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def erk_densities(shapes: Sequence[Sequence[int]], density: float, power: float = 0.9) -> list[float]:
    """Per-layer densities whose count-weighted mean is ``density``.

    ``shapes`` are the weight shapes in layer order. Real numbers; :func:`trainers.masking.apportion` turns
    them into integer keep counts summing exactly to the target.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    numels = [math.prod(s) for s in shapes]
    raw = [(sum(s) / math.prod(s)) ** power for s in shapes]
    dense: set[int] = set()
    while True:
        rhs = 0.0
        divisor = 0.0
        for i, n in enumerate(numels):
            if i in dense:
                rhs -= n * (1.0 - density)
            else:
                rhs += n * density
                divisor += raw[i] * n
        if divisor == 0.0:  # everything dense (only possible for density == 1)
            return [1.0] * len(numels)
        eps = rhs / divisor
        live = [i for i in range(len(numels)) if i not in dense]
        top = max(raw[i] for i in live)
        if top * eps > 1.0:
            # like the official loop: every layer at the current maximum raw probability turns dense
            dense.update(i for i in live if raw[i] == top)
            continue
        return [1.0 if i in dense else eps * raw[i] for i in range(len(numels))]
