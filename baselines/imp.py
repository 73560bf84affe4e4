"""IMP: iterative global magnitude pruning with retraining (Han et al., 2015; paper §4.1.3, ref. [19]).

``schedule: iterative`` (default, the original prune → retrain loop, which the paper notes makes IMP's
training "significantly longer"): train dense; then, round after round, remove ``prune_fraction_per_round``
of the *remaining* weights (open_lth: ``ceil(0.2 · remaining)``) with one global magnitude threshold over
backbone + heads (as the AdapMTL repository's ``pruning.py``), and retrain with the fixed mask; the last
round is clipped to the target exactly, and its retraining is the run's main loop (the full budget, like
every other method's sparse training). No rewinding.

Per-round budget: each intermediate round retrains ``round_iterations`` steps (default
``ceil(iterations / (2 · rounds))``, so the rounds together cost half a budget: total = dense phase + half a
budget of rounds + the final budget ≈ 2.5×, close to the 2.3× Han et al. report for AlexNet: 173 h of
pruning + retraining against 75 h of dense training). The dense phase reuses the matching dense reference's weights when the
orchestrator provides them (``reuse_dense_checkpoint``; see ``baselines.dense_start``); every step, reused
or taken, is in the run's compute ledger (``compute/*`` metrics). Each phase uses the run's optimizer and
schedule from their start, on the setup data stream, like LTH's dense phase.

``schedule: single_budget`` (this project's earlier behaviour, a named option): the rounds happen *during*
the one training budget, every ``prune_every`` steps or spread evenly over ``[start_step, end_fraction ·
iterations]``, then training continues with the fixed mask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from baselines.dense_start import dense_weights_for
from trainers.masking import MaskedMethod, global_topk_masks, is_mask_key, magnitude_scores
from trainers.methods import MethodContext, MethodMetadata, MethodParams
from trainers.sparsity import unwrap


class IMPParams(MethodParams):
    schedule: Literal["iterative", "single_budget"] = Field(default="iterative", description=(
        "iterative: dense training, then prune → retrain rounds, each with its own budget (the original); "
        "single_budget: every round inside the run's one budget"))
    prune_fraction_per_round: float = Field(default=0.2, gt=0, lt=1, description="fraction of remaining weights")
    # iterative
    round_iterations: int | None = Field(default=None, gt=0, description=(
        "iterative: retraining steps after each intermediate round (None: ceil(iterations / (2·rounds)))"))
    reuse_dense_checkpoint: bool = Field(default=True, description=(
        "iterative: take the dense phase from the matching dense reference when available"))
    # single_budget
    prune_every: int | None = Field(default=None, gt=0, description=(
        "single_budget: steps between rounds (None: spread)"))
    start_step: int = Field(default=0, ge=0, description=(
        "single_budget: round j prunes after step start_step + j·prune_every"))
    end_fraction: float = Field(default=0.5, gt=0, le=1, description=(
        "single_budget: last round by this fraction of the run"))


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
        self.dense_source = "none"
        self.round_iterations = 0

    @property
    def p(self) -> IMPParams:
        return self.params  # type: ignore[return-value]

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        assert self.masks is not None
        self.schedule = keep_schedule(self.masks.total, self.target_keep, self.p.prune_fraction_per_round)
        self.round = 0
        if self.p.schedule == "single_budget":
            self.steps = prune_steps(len(self.schedule), ctx.total_iterations, self.p)
            return
        rounds = len(self.schedule)
        self.round_iterations = self.p.round_iterations or -(-ctx.total_iterations // max(2 * rounds, 1))
        if self.resuming:  # every round is done: the checkpoint is from the final retraining (main loop)
            self.round = rounds
            self.kept = self.target_keep
            return
        self._dense_phase(ctx)
        for r, keep in enumerate(self.schedule):
            self._prune(keep)
            self.round = r + 1
            if r < rounds - 1:
                ctx.train_phase(self.round_iterations, after_step=lambda _i: self.masks.enforce_())  # type: ignore[union-attr]

    def _dense_phase(self, ctx: MethodContext) -> None:
        if self.p.reuse_dense_checkpoint:
            weights = dense_weights_for(ctx, ctx.total_iterations, "IMP")
            if weights is not None:
                missing, unexpected = unwrap(ctx.model).load_state_dict(weights, strict=False)
                assert not unexpected and all(is_mask_key(k) for k in missing), (missing, unexpected)
                self.dense_source = "checkpoint"
                return
        ctx.train_phase(ctx.total_iterations)
        self.dense_source = "trained"

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        if self.p.schedule != "single_budget":
            return
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
        return {**super().state_dict(), "round": self.round, "dense_source": self.dense_source}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.round = int(state.get("round", 0))
        self.dense_source = str(state.get("dense_source", self.dense_source))

    def extra_artifacts(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.log_state(), "schedule": self.p.schedule, "schedule_kept": self.schedule}
        if self.p.schedule == "single_budget":
            out["schedule_steps"] = self.steps
        else:
            out.update(round_iterations=self.round_iterations, dense_source=self.dense_source)
        return out
