"""DiSparse's knobs (dynamic variant, the paper's comparison): update interval, END, initial prune rate.

Defaults are the official configuration (METHODS_SPEC §2.1, §2.5): END at 75 % of the run (15000 of 20000 on
NYUv2, 75000 of 100000 on Taskonomy), PRUNE_RATE 0.5, ERK power 0.9. ``update_every`` (INT), ``grad_splits``
and the task loss weights λ are left unset here, so each run takes the official value *of its dataset*
(NYUv2: INT 50, 2 splits, λ seg 1 / sn 20; Taskonomy: INT 250, 8 splits, λ 1/3/2/7/7; see
``baselines.disparse.OFFICIAL_DEFAULTS``).
"""

from __future__ import annotations

from typing import Any

FIXED: dict[str, Any] = {
    "variant": "dynamic",
    "end_fraction": 0.75,
    "prune_rate": 0.5,
    "erk_power": 0.9,
}


def space() -> dict[str, Any]:
    return {
        "update_every": {"type": "choice", "values": [25, 50, 100, 250]},
        "end_fraction": {"type": "uniform", "low": 0.5, "high": 0.9},
        "prune_rate": {"type": "uniform", "low": 0.1, "high": 0.7},
    }
