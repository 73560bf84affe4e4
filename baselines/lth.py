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

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field

from trainers import checkpoint
from trainers.masking import MaskedMethod, global_topk_masks, is_mask_key, keep_count, magnitude_scores
from trainers.methods import MethodContext, MethodMetadata, MethodParams
from trainers.sparsity import unwrap

log = logging.getLogger(__name__)


class LTHParams(MethodParams):
    rounds: int = Field(default=1, ge=1, description="pruning rounds to reach the target (1 = one shot)")
    rewind_step: int = Field(default=0, ge=0, description="rewind to the weights after this many dense steps")
    dense_iterations: int | None = Field(default=None, gt=0, description="dense steps per round (None: budget)")
    reuse_dense_checkpoint: bool = Field(default=True, description="use a matching dense run for round 1")


def round_keeps(total: int, sparsity: float, rounds: int) -> list[int]:
    """Kept counts after each round: density ``(1 − s)^(r/R)``, the last one exactly the target."""
    counts = [keep_count(total, 1.0 - (1.0 - sparsity) ** (r / rounds)) for r in range(1, rounds)]
    return [*counts, keep_count(total, sparsity)]


def _state_without_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in unwrap(model).state_dict().items() if not is_mask_key(k)}


def _plain_key(key: str) -> str:
    """``x.parametrizations.weight.original`` -> ``x.weight`` (the key of an unparametrized model)."""
    return key.replace(".parametrizations.weight.original", ".weight")


class LTH(MaskedMethod):
    name: ClassVar[str] = "lth"
    Params = LTHParams
    metadata = MethodMetadata(
        title="The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
        year=2019,
        bibtex_key="frankle2019lottery",
        display_name="LTH",
        bibtex=(
            "@inproceedings{frankle2019lottery, title={The Lottery Ticket Hypothesis: Finding Sparse, "
            "Trainable Neural Networks}, author={Frankle, Jonathan and Carbin, Michael}, "
            "booktitle={International Conference on Learning Representations (ICLR)}, year={2019}}"
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
        init = _state_without_masks(ctx.model)
        rewind: dict[str, torch.Tensor] = init
        snapshot: dict[str, dict[str, torch.Tensor]] = {}

        def after_step(i: int) -> None:
            self.masks.enforce_()  # type: ignore[union-attr]
            if p.rewind_step and i + 1 == p.rewind_step and "k" not in snapshot:
                snapshot["k"] = _state_without_masks(ctx.model)

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
        path = ctx.dense_checkpoint
        if path is None or not Path(path).exists():
            return False
        saved = checkpoint.load(path, map_location=ctx.device)  # weights_only: a dense file cannot run code
        why = _mismatch(saved, ctx, dense_iters)
        if why:
            log.warning("LTH: not reusing dense checkpoint %s (%s); training the dense phase", path, why)
            return False
        weights = saved["model"]
        mapped = {k: weights[_plain_key(k)] for k in _state_without_masks(ctx.model)}
        self._rewind(mapped)
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


def _mismatch(saved: Mapping[str, Any], ctx: MethodContext, dense_iters: int) -> str:
    """Why a dense checkpoint is not this run's dense phase ('' when it is)."""
    cfg = saved.get("config") or {}
    if cfg.get("method") != "dense":
        return f"method {cfg.get('method')!r}"
    if cfg.get("seed") != ctx.seed:
        return f"seed {cfg.get('seed')} != {ctx.seed}"
    train = cfg.get("train") or {}
    if train.get("iterations") != dense_iters:
        return f"iterations {train.get('iterations')} != {dense_iters}"
    tasks = (cfg.get("data") or {}).get("tasks")
    if tasks is not None and list(tasks) != list(ctx.tasks):
        return f"tasks {tasks} != {ctx.tasks}"
    probe = ctx.make_optimizer([torch.nn.Parameter(torch.zeros(1))])
    sched = ctx.make_scheduler(probe)
    ours = {"lr": probe.defaults.get("lr"), "betas": list(probe.defaults.get("betas", ())),
            "weight_decay": probe.defaults.get("weight_decay"),
            "lr_decay_every": getattr(sched, "step_size", None), "lr_decay": getattr(sched, "gamma", None)}
    for key, value in ours.items():
        theirs = train.get(key)
        theirs = list(theirs) if isinstance(theirs, list | tuple) else theirs
        if theirs != value:
            return f"train.{key} {theirs} != {value}"
    weights = saved.get("model") or {}
    for key, tensor in _state_without_masks(ctx.model).items():
        plain = _plain_key(key)
        if plain not in weights or tuple(weights[plain].shape) != tuple(tensor.shape):
            return f"model differs at {plain}"
    return ""
