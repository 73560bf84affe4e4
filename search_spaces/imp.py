"""IMP's knobs: the per-round fraction (open_lth 0.2) and the retraining budget of each round.

Default schedule: ``iterative`` (dense training, then prune → retrain rounds, each with its own budget of
``ceil(iterations / rounds)`` steps, then the final retraining; see ``baselines.imp``).
"""

from __future__ import annotations

from typing import Any

#: open_lth's 20 % of the remaining weights per round, the original prune → retrain schedule
FIXED: dict[str, Any] = {"schedule": "iterative", "prune_fraction_per_round": 0.2}


def space() -> dict[str, Any]:
    return {
        "prune_fraction_per_round": {"type": "uniform", "low": 0.1, "high": 0.5},
    }
