"""SNIP's knob: how many setup batches the connection sensitivity sums over (official: one batch)."""

from __future__ import annotations

from typing import Any

#: defaults every trial uses unless the sweep overrides them (the official single batch, BN in eval mode)
FIXED: dict[str, Any] = {"batches": 1, "bn_eval": True}


def space() -> dict[str, Any]:
    return {"batches": {"type": "choice", "values": [1, 4, 16]}}
