"""IMP: iterative global magnitude pruning during training, no rewinding (Han et al., 2015; paper §4.1.3).

Every ``prune_every`` steps one round removes ``prune_fraction_per_round`` of the *remaining* weights
(open_lth: ``ceil(0.2 · remaining)``) with one global magnitude threshold over backbone + heads (as the
AdapMTL repository's ``pruning.py``), until the target; the last round is clipped so the run ends at the
target exactly, then training continues with the fixed mask. The rounds fit inside the run's budget (the
paper's IMP retrains between rounds; with one budget for every method, the rounds share it).

Default schedule: the rounds are spread evenly over ``[start_step, end_fraction · iterations]``; an
explicit ``prune_every`` overrides the spacing (an error at setup if the rounds do not fit in the run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from trainers.masking import MaskedMethod, global_topk_masks, magnitude_scores
from trainers.methods import MethodContext, MethodMetadata, MethodParams


class IMPParams(MethodParams):
    prune_fraction_per_round: float = Field(default=0.2, gt=0, lt=1, description="fraction of remaining weights")
    prune_every: int | None = Field(default=None, gt=0, description="steps between rounds (None: spread)")
    start_step: int = Field(default=0, ge=0, description="round j prunes after step start_step + j·prune_every")
    end_fraction: float = Field(default=0.5, gt=0, le=1, description="last round by this fraction of the run")


def keep_schedule(total: int, target_keep: int, fraction: float) -> list[int]:
    """Kept counts after each round: ``remaining − ceil(fraction · remaining)``, clipped at the target."""
    kept, out = total, []
    while kept > target_keep:
        kept = max(target_keep, kept - math.ceil(fraction * kept))
        out.append(kept)
    return out


def prune_steps(rounds: int, iterations: int, params: IMPParams) -> list[int]:
    """Completed-step counts at which each round prunes (the mask applies from the following step on)."""
    if rounds == 0:
        return []
    every = params.prune_every
    if every is None:
        # evenly spread (several rounds may share a step when the run is shorter than the schedule)
        span = max(1, int(params.end_fraction * iterations) - params.start_step)
        steps = [params.start_step + -(-(j + 1) * span // rounds) for j in range(rounds)]
    else:
        steps = [params.start_step + every * (j + 1) for j in range(rounds)]
    if steps[-1] > iterations:
        raise ValueError(
            f"IMP needs {rounds} rounds (every {every or 'auto'} steps from step {params.start_step}), "
            f"which ends at {steps[-1]} > {iterations} iterations"
        )
    return steps


class IMP(MaskedMethod):
    name: ClassVar[str] = "imp"
    Params = IMPParams
    # The reference the AdapMTL paper gives for IMP ([19]): Han, Mao and Dally, "Deep compression", 2015.
    metadata = MethodMetadata(
        title="Deep Compression: Compressing Deep Neural Networks with Pruning, Trained Quantization and "
              "Huffman Coding",
        year=2015,
        bibtex_key="han2015deep",
        display_name="IMP",
        bibtex=(
            "@article{han2015deep, title={Deep Compression: Compressing Deep Neural Networks with Pruning, "
            "Trained Quantization and {Huffman} Coding}, author={Han, Song and Mao, Huizi and Dally, William J.}, "
            "journal={arXiv preprint arXiv:1510.00149}, year={2015}, eprint={1510.00149}, archiveprefix={arXiv}}"
        ),
    )

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.schedule: list[int] = []
        self.steps: list[int] = []
        self.round = 0

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        assert self.masks is not None
        p: IMPParams = self.params  # type: ignore[assignment]
        self.schedule = keep_schedule(self.masks.total, self.target_keep, p.prune_fraction_per_round)
        self.steps = prune_steps(len(self.schedule), ctx.total_iterations, p)
        self.round = 0

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        done = step + 1
        while self.round < len(self.steps) and self.steps[self.round] <= done:
            self._prune(self.schedule[self.round])
            self.round += 1

    def _prune(self, keep: int) -> None:
        """One global magnitude round (no host sync: the count is known)."""
        assert self.masks is not None
        self.masks.set_masks(global_topk_masks(magnitude_scores(self.masks), keep))
        self.kept = keep

    def log_state(self) -> dict[str, float]:
        return {**super().log_state(), "prune/round": float(self.round)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "round": self.round}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.round = int(state.get("round", 0))

    def extra_artifacts(self) -> dict[str, Any]:
        return {**self.log_state(), "schedule_steps": self.steps, "schedule_kept": self.schedule}
