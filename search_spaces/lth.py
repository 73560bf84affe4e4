"""LTH's knobs: pruning rounds to the target and the rewind point (open_lth's late rewinding).

``dense_iterations`` stays at the run's budget (same budget for every method) and is not searched.
"""

from __future__ import annotations

from typing import Any

#: one-shot prune after a full dense run, rewind to the original initialization (paper §4.1.3)
FIXED: dict[str, Any] = {"rounds": 1, "rewind_step": 0, "reuse_dense_checkpoint": True}


def space() -> dict[str, Any]:
    return {
        "rounds": {"type": "choice", "values": [1, 2, 3]},
        "rewind_step": {"type": "choice", "values": [0, 100, 500]},
    }
