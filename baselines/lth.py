"""LTH (Frankle & Carbin, ICLR 2019) as the AdapMTL paper runs it (§4.1.3, METHODS_SPEC §4.2).

Train dense, prune by global magnitude to the target (one shot, or ``rounds`` geometric rounds, open_lth
style: each round retrains from the rewind point with the current mask, then prunes), rewind the surviving
weights to their initial values (``rewind_step`` k > 0: their values after k dense steps, "late
rewinding"), then the engine's loop retrains the sparse net with the fixed mask for the full budget.

The rewind restores the whole model state (weights, biases, BatchNorm) except the mask, as open_lth does.
The dense phase runs in ``setup`` through ``ctx.train_phase`` (the run's optimizer and schedule, the setup
data stream). When ``ctx.dense_checkpoint`` holds a dense run of the same seed, tasks, architecture
(state-dict shapes), iterations and optimizer settings, its final weights replace round 1's dense training
(the init is a function of seed and architecture alone, so the rewind target is the same); anything else,
or ``rewind_step > 0`` (θ_k of that trajectory is not stored), trains the dense phase here. The source is
recorded in ``extra_artifacts()["dense_source"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from pydantic import Field

from baselines.dense_start import dense_weights_for, state_without_masks
from trainers.masking import MaskedMethod, global_topk_masks, is_mask_key, keep_count, magnitude_scores
from trainers.methods import MethodContext, MethodMetadata, MethodParams
from trainers.sparsity import unwrap


class LTHParams(MethodParams):
    rounds: int = Field(default=1, ge=1, description="pruning rounds to reach the target (1 = one shot)")
    rewind_step: int = Field(default=0, ge=0, description="rewind to the weights after this many dense steps")
    dense_iterations: int | None = Field(default=None, gt=0, description="dense steps per round (None: budget)")
    reuse_dense_checkpoint: bool = Field(default=True, description="use a matching dense run for round 1")


def round_keeps(total: int, sparsity: float, rounds: int) -> list[int]:
    """Kept counts after each round: density ``(1 − s)^(r/R)``, the last one exactly the target."""
    counts = [keep_count(total, 1.0 - (1.0 - sparsity) ** (r / rounds)) for r in range(1, rounds)]
    return [*counts, keep_count(total, sparsity)]


class LTH(MaskedMethod):
    name: ClassVar[str] = "lth"
    Params = LTHParams
    # The reference the AdapMTL paper gives for LTH ([13]): Frankle, Dziugaite, Roy and Carbin, "The lottery
    # ticket hypothesis at scale", 2020 (the paper says ICLR; the text is arXiv:1903.01611, since retitled
    # "Stabilizing the Lottery Ticket Hypothesis"). Its rewind-to-an-early-step is what `rewind_step` does.
    metadata = MethodMetadata(
        title="The Lottery Ticket Hypothesis at Scale",
        year=2020,
        bibtex_key="frankle2020lottery",
        display_name="LTH",
        bibtex=(
            "@article{frankle2020lottery, title={The Lottery Ticket Hypothesis at Scale}, author={Frankle, "
            "Jonathan and Dziugaite, Gintare Karolina and Roy, Daniel M. and Carbin, Michael}, "
            "journal={arXiv preprint arXiv:1903.01611}, year={2020}, eprint={1903.01611}, archiveprefix={arXiv}}"
        ),
    )

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.rounds_done = 0
        self.dense_source = "none"
        self.rewound = False

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        assert self.masks is not None
        p: LTHParams = self.params  # type: ignore[assignment]
        self.kept = self.target_keep
        if self.resuming:  # masks and the rewound weights come back with the checkpoint
            return
        dense_iters = p.dense_iterations or ctx.total_iterations
        if p.rewind_step > dense_iters:
            raise ValueError(f"rewind_step {p.rewind_step} is beyond the dense phase ({dense_iters} steps)")
        assert ctx.target_sparsity is not None
        keeps = round_keeps(self.masks.total, ctx.target_sparsity, p.rounds)
        init = state_without_masks(ctx.model)
        rewind: dict[str, torch.Tensor] = init
        snapshot: dict[str, dict[str, torch.Tensor]] = {}

        def after_step(i: int) -> None:
            self.masks.enforce_()  # type: ignore[union-attr]
            if p.rewind_step and i + 1 == p.rewind_step and "k" not in snapshot:
                snapshot["k"] = state_without_masks(ctx.model)

        for r, keep in enumerate(keeps):
            if r == 0 and p.rewind_step == 0 and p.reuse_dense_checkpoint and self._load_dense(ctx, dense_iters):
                self.dense_source = "checkpoint"
            else:
                if r > 0:
                    self._rewind(rewind)
                ctx.train_phase(dense_iters, after_step=after_step)
                if r == 0:
                    self.dense_source = "trained"
                    rewind = snapshot.get("k", init)
            self.masks.set_masks(global_topk_masks(magnitude_scores(self.masks), keep))
            self.rounds_done = r + 1
        self._rewind(rewind)
        self.rewound = True

    def _rewind(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load ``state`` (no masks in it) and re-zero pruned stored weights."""
        missing, unexpected = unwrap(self.ctx.model).load_state_dict(state, strict=False)  # type: ignore[union-attr]
        assert not unexpected and all(is_mask_key(k) for k in missing), (missing, unexpected)
        self.masks.enforce_()  # type: ignore[union-attr]

    def _load_dense(self, ctx: MethodContext, dense_iters: int) -> bool:
        """Load the dense reference's final weights if it is the same run up to the method; else False."""
        weights = dense_weights_for(ctx, dense_iters, "LTH")
        if weights is None:
            return False
        self._rewind(weights)
        return True

    def log_state(self) -> dict[str, float]:
        return {**super().log_state(), "prune/round": float(self.rounds_done),
                "lth/dense_from_checkpoint": float(self.dense_source == "checkpoint")}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rounds_done": self.rounds_done, "dense_source": self.dense_source}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.rounds_done = int(state.get("rounds_done", self.rounds_done))
        self.dense_source = str(state.get("dense_source", self.dense_source))
        self.rewound = True

    def extra_artifacts(self) -> dict[str, Any]:
        return {**self.log_state(), "dense_source": self.dense_source}
