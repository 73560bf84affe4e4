"""DiSparse's knobs (dynamic variant, the paper's comparison): update interval, END, initial prune rate.

The defaults are the official NYUv2 configuration (METHODS_SPEC §2.1, §2.5): INT 50, END 15000 of 20000
iterations, PRUNE_RATE 0.5, ERK power 0.9. Task loss weights λ default to equal (the official NYUv2 config
trains seg/sn with λ = [1, 20]; pass ``task_weights`` to reproduce it).
"""

from __future__ import annotations

from typing import Any

FIXED: dict[str, Any] = {
    "variant": "dynamic",
    "update_every": 50,
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
