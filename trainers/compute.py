"""Training compute of one run, counted where it is spent, so tables can disclose unequal budgets.

Methods differ in what they spend beyond the main loop: LTH trains a dense phase before its sparse run, IMP
retrains after every pruning round, SNIP and DiSparse run extra forward/backward passes to score weights. A
comparison is only honest if it says so; the engine therefore counts every optimizer step itself (main loop
and ``ctx.train_phase``), and methods add what only they know (scoring passes, steps inherited from a
reused dense checkpoint). The ledger travels in the checkpoint, so a resumed run reports the same totals as
an uninterrupted one.

``step_equivalents`` folds everything into one comparable number, in optimizer steps of the run's batch size:
a scoring forward over ``n`` images costs ``n / (3·batch)`` steps and a scoring backward ``2n / (3·batch)``
(the usual backward ≈ 2× forward rule), steps reused from a dense checkpoint count in full (they were spent,
by the reference run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ComputeLedger"]


@dataclass
class ComputeLedger:
    """Counters of one run (host integers; incremented at most once per step, never synced from a device)."""

    batch_size: int = 1
    world_size: int = 1
    #: every optimizer step this run took: the main loop and any setup phase
    optimizer_steps: int = 0
    #: of which inside setup phases (LTH's dense phase and rounds, IMP's dense phase and retraining rounds)
    setup_steps: int = 0
    #: optimizer steps not taken here because a matching dense reference checkpoint was reused
    reused_steps: int = 0
    #: images that went through an extra scoring forward / backward (summed over data-parallel workers)
    scoring_forward_images: int = 0
    scoring_backward_images: int = 0

    def add_steps(self, n: int = 1, *, setup: bool = False) -> None:
        self.optimizer_steps += n
        if setup:
            self.setup_steps += n

    def add_reused(self, n: int) -> None:
        self.reused_steps += n

    def add_scoring(self, *, forward_images: int, backward_images: int) -> None:
        """A scoring pass on this worker's slice (``forward_images`` images, ``backward_images`` image-backwards)."""
        self.scoring_forward_images += forward_images * self.world_size
        self.scoring_backward_images += backward_images * self.world_size

    @property
    def step_equivalents(self) -> float:
        per_step = 3.0 * max(self.batch_size, 1)
        scoring = (self.scoring_forward_images + 2.0 * self.scoring_backward_images) / per_step
        return float(self.optimizer_steps + self.reused_steps + scoring)

    def metrics(self) -> dict[str, float]:
        """The ``compute/*`` final metrics of the MLflow schema."""
        return {
            "compute/optimizer_steps": float(self.optimizer_steps),
            "compute/setup_steps": float(self.setup_steps),
            "compute/reused_steps": float(self.reused_steps),
            "compute/scoring_forward_images": float(self.scoring_forward_images),
            "compute/scoring_backward_images": float(self.scoring_backward_images),
            "compute/step_equivalents": self.step_equivalents,
        }

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            if key in ("batch_size", "world_size"):
                continue  # the resuming run's own values stand
            if hasattr(self, key):
                setattr(self, key, int(value))
