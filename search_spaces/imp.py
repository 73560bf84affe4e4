"""IMP's knobs: the per-round fraction (open_lth 0.2) and how much of the run the rounds may use."""

from __future__ import annotations

from typing import Any

#: open_lth's 20% of the remaining weights per round, rounds spread over the first half of the run
FIXED: dict[str, Any] = {"prune_fraction_per_round": 0.2, "start_step": 0, "end_fraction": 0.5}


def space() -> dict[str, Any]:
    return {
        "prune_fraction_per_round": {"type": "uniform", "low": 0.1, "high": 0.5},
        "end_fraction": {"type": "uniform", "low": 0.25, "high": 0.75},
    }
