"""DiSparse (Sun et al., CVPR 2022): disentangled per-task importance + the unanimous decision.

Task ``k`` owns ``Θ_k = backbone ∪ head_k``. Each task ranks the weights of its own ``Θ_k``; a backbone weight
is removed only if *every* task ranks it out (the backbone keeps the OR of the task masks) and head ``k``
keeps task k's own choice. Two variants (METHODS_SPEC §2.3, §2.5), any number of tasks:

``static`` (``disparse_static``): per-task SNIP sensitivity ``Σ_b |∂L_k/∂W ⊙ W|`` over ``num_batches`` setup
batches, scored (as the official code) on a Xavier-normal re-initialised copy of the weights, the masks then
applied to the model's own initialization and fixed. Keep ratio: the official code hand-tunes one keep ratio
per sparsity so that the OR lands *near* the target (NYUv2 90% → 0.08). Here the common keep ratio ρ is found
by bisection so that |OR mask| is the largest count ≤ the target, then tasks take their next-ranked weight
one at a time in order of their next quantile (ties: task order) until |OR mask| equals the target exactly;
each such step adds at most one weight, so the count is hit to the weight and every kept weight is still
within some task's own top-K_k (the rule holds with per-task K_k differing by at most one from ⌊ρ·|Θ_k|⌋).

``dynamic`` (``disparse_dynamic``, the default, as the paper): ERK layer densities over all layers
(power 0.9), random masks at those densities with the stem dense, then at iterations ``i = 0, INT, 2·INT, …
< END`` (before that iteration's forward, on that iteration's training batch as the official code):
(1) per-layer magnitude prune to ``d_l·(1 − r(i))`` with the cosine rate
``r(i) = prune_rate·(1 + cos(π·i/END))/2``; (2) per-task gradients ``|∂L_k/∂W|`` of the network with every
mask set to 1, the batch split in ``grad_splits`` parts; (3) each task regrows, per layer of its ``Θ_k``, the
``d_l·N_l − alive_l`` pruned positions with the largest gradient; (4) the backbone takes the union of the
tasks' growth, head k its own. At ``i == END``: a last magnitude prune to exactly the ERK counts (integers
apportioned so their sum is the target count), then fixed masks.

Which network step (2) differentiates (``pruned_values``): the official code prunes with
``torch.nn.utils.prune``, whose ``weight_orig`` keeps the values of pruned weights (they then change only
through Adam's coupled weight decay and moments, since their loss gradient is masked to zero). Its
all-ones-mask copy is therefore the network *with the pruned weights' stored values* (at i = 0 the dense
initialisation), and a regrown weight comes back with that value. ``keep`` (default) reproduces this: the
stored values at pruned positions are left alone while the effective weight ``mask ⊙ W`` the forward pass
sees stays exactly zero. ``zero`` (this project's earlier behaviour) zeroes stored weights at every prune, so
step (2) sees the sparse network and regrown weights restart at 0.

Official per-dataset values (config_nyuv2.py / config_taskonomy.py) are the defaults where a parameter is
left unset: ``update_every`` (INT) 50 on NYUv2, 250 on Taskonomy; ``grad_splits`` 2 / 8; the training loss
weights λ ``[seg 1, sn 20]`` on NYUv2 (the official config has no depth task; depth gets 1) and
``[1, 3, 2, 7, 7]`` on Taskonomy. Datasets without official values (synthetic scenes) use NYUv2's schedule
and equal weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from baselines.erk import erk_densities
from trainers.masking import (
    MaskedMethod,
    all_reduce_,
    apportion,
    magnitude_scores,
    preserved_buffers,
    split_batch,
    topk_mask,
)
from trainers.methods import MethodContext, MethodMetadata, MethodParams

#: The official configs' values per dataset (config_nyuv2.py, config_taskonomy.py); others use ``_FALLBACK``.
OFFICIAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "nyuv2": {"update_every": 50, "grad_splits": 2,
              "task_weights": {"segment_semantic": 1.0, "normal": 20.0}},
    "taskonomy": {"update_every": 250, "grad_splits": 8,
                  "task_weights": {"segment_semantic": 1.0, "normal": 3.0, "depth_zbuffer": 2.0,
                                   "keypoints2d": 7.0, "edge_texture": 7.0}},
}
_FALLBACK: dict[str, Any] = {"update_every": 50, "grad_splits": 2, "task_weights": {}}


class DiSparseParams(MethodParams):
    variant: Literal["static", "dynamic"] = Field(default="dynamic", description="official disparse_<variant>")
    # static
    num_batches: int = Field(default=50, ge=1, description="static: setup batches of per-task sensitivity")
    static_reinit: bool = Field(default=True, description="static: score on a Xavier re-initialised copy")
    # dynamic
    update_every: int | None = Field(default=None, ge=1, description=(
        "dynamic: INT, steps between mask updates (None: official per dataset, NYUv2 50, Taskonomy 250)"))
    end_fraction: float = Field(default=0.75, gt=0, lt=1, description="dynamic: END / iterations (15000/20000)")
    prune_rate: float = Field(default=0.5, ge=0, lt=1, description="dynamic: initial cosine prune rate")
    erk_power: float = Field(default=0.9, ge=0, description="dynamic: ERK exponent")
    grad_splits: int | None = Field(default=None, ge=1, description=(
        "dynamic: batch parts for the per-task gradients (None: official per dataset, NYUv2 2, Taskonomy 8)"))
    dense_stem: bool = Field(default=True, description="dynamic: the first backbone layer starts dense")
    pruned_values: Literal["keep", "zero"] = Field(default="keep", description=(
        "dynamic: keep the stored values of pruned weights (official torch prune semantics: regrowth "
        "gradients see them, regrown weights come back with them) or zero them at every prune"))
    regrow_batch: Literal["train", "setup"] = Field(default="train", description=(
        "dynamic: regrowth gradients from the iteration's own training batch (official) or a separate "
        "batch of the setup stream"))
    # both
    task_weights: dict[str, float] | Literal["official", "equal"] = Field(default="official", description=(
        "training loss weights λ: the official config's per dataset (NYUv2 seg 1 / sn 20; Taskonomy "
        "1/3/2/7/7), all 1, or an explicit {task: weight}"))

    @field_validator("task_weights")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if isinstance(v, dict) and any(not math.isfinite(w) or w < 0 for w in v.values()):
            raise ValueError("task weights must be finite and >= 0")
        return v


def resolved_settings(params: DiSparseParams, dataset: str, tasks: Sequence[str]) -> dict[str, Any]:
    """``update_every``, ``grad_splits`` and per-task ``task_weights`` for a run on ``dataset``."""
    official = OFFICIAL_DEFAULTS.get(dataset, _FALLBACK)
    if params.task_weights == "official":
        given = official["task_weights"]
    elif params.task_weights == "equal":
        given = {}
    else:
        given = params.task_weights
    return {
        "update_every": params.update_every or official["update_every"],
        "grad_splits": params.grad_splits or official["grad_splits"],
        "task_weights": {t: float(given.get(t, 1.0)) for t in tasks},
    }


# -- the unanimous rule ------------------------------------------------------------------------------
def unanimous_masks(task_keep: Mapping[str, Sequence[torch.Tensor]], backbone_count: int) -> list[torch.Tensor] | None:
    """Combine per-task keep masks into the model mask (pure function; kept for tests and reuse).

    ``task_keep[t]`` lists task t's masks over Θ_t: the ``backbone_count`` backbone layers, then its head's
    layers. Returns the backbone masks (OR over tasks) followed by each task's head masks in task order.
    """
    tasks = list(task_keep)
    if not tasks:
        return None
    backbone = [torch.stack([task_keep[t][i] for t in tasks]).any(0) for i in range(backbone_count)]
    heads = [m for t in tasks for m in task_keep[t][backbone_count:]]
    return backbone + heads


class _Ranks:
    """Per-task ranks over Θ_k (backbone flat, then head_k flat): 0 = most important; ties by position."""

    def __init__(self, scores: Mapping[str, torch.Tensor], backbone_numel: int) -> None:
        self.nb = backbone_numel
        self.ranks: dict[str, torch.Tensor] = {}
        for t, s in scores.items():
            order = torch.sort(torch.nan_to_num(s.float(), nan=-math.inf), descending=True, stable=True).indices
            rank = torch.empty_like(order)
            rank[order] = torch.arange(order.numel(), device=order.device)
            self.ranks[t] = rank
        self.sizes = {t: r.numel() for t, r in self.ranks.items()}

    def keep(self, counts: Mapping[str, int]) -> dict[str, torch.Tensor]:
        return {t: self.ranks[t] < counts[t] for t in self.ranks}

    def kept_total(self, counts: Mapping[str, int]) -> int:
        """|OR of backbone keeps| + Σ_k |head_k keeps| (one host sync)."""
        keep = self.keep(counts)
        backbone = torch.stack([k[: self.nb] for k in keep.values()]).any(0).sum()
        heads = sum(k[self.nb:].sum() for k in keep.values())
        return int((backbone + heads).item())


def exact_unanimous_counts(ranks: _Ranks, target: int) -> dict[str, int]:
    """Per-task top-K_k sizes whose unanimous combination keeps exactly ``target`` weights.

    Bisection on the common keep ratio ρ (K_k = ⌊ρ·|Θ_k|⌋) to the last ρ with a count ≤ target, then single
    steps (each adds 0 or 1 kept weight) in order of each task's next quantile ``(K_k + 1)/|Θ_k|``.
    """
    sizes = ranks.sizes

    def at(rho: float) -> dict[str, int]:
        return {t: min(n, int(math.floor(rho * n))) for t, n in sizes.items()}

    lo, hi = 0.0, 1.0
    if ranks.kept_total(at(hi)) < target:
        raise ValueError("target exceeds the prunable weights")
    for _ in range(64):
        if all(at(hi)[t] - at(lo)[t] <= 1 for t in sizes):
            break
        mid = (lo + hi) / 2
        if ranks.kept_total(at(mid)) <= target:
            lo = mid
        else:
            hi = mid
    counts = at(lo)
    kept = ranks.kept_total(counts)
    order = list(sizes)
    while kept < target:
        t = min((t for t in order if counts[t] < sizes[t]), key=lambda t: ((counts[t] + 1) / sizes[t], order.index(t)))
        counts[t] += 1
        kept = ranks.kept_total(counts)
    if kept != target:  # pragma: no cover - each step adds at most one weight
        raise RuntimeError(f"unanimous count {kept} != {target}")
    return counts


def _fill(chosen: list[torch.Tensor], scores: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Add the ``n`` best-scoring positions (chosen ones must score ``-inf``) to the masks, globally."""
    extra = topk_mask(torch.cat([s.reshape(-1) for s in scores]), n)
    parts = extra.split([s.numel() for s in scores])
    return [c | e.reshape(c.shape) for c, e in zip(chosen, parts, strict=True)]


class DiSparse(MaskedMethod):
    name: ClassVar[str] = "disparse"
    Params = DiSparseParams
    metadata = MethodMetadata(
        title="DiSparse: Disentangled Sparsification for Multitask Model Compression",
        year=2022,
        bibtex_key="sun2022disparse",
        display_name="DiSparse",
        bibtex=(
            "@inproceedings{sun2022disparse, title={{DiSparse}: Disentangled Sparsification for Multitask Model "
            "Compression}, author={Sun, Xinglong and Hassani, Ali and Wang, Zhangyang and Huang, Gao and Shi, "
            "Humphrey}, booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern "
            "Recognition (CVPR)}, pages={12382--12392}, year={2022}}"
        ),
    )

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.layer_keep: list[int] = []
        self.task_counts: dict[str, int] = {}
        self.end = 0
        self.updates = 0
        self.final_done = False
        self.setup_batches = 0
        self.rate = 0.0
        self.settings: dict[str, Any] = {}

    @property
    def p(self) -> DiSparseParams:
        return self.params  # type: ignore[return-value]

    # -- hooks ------------------------------------------------------------------------------------------
    def setup(self, ctx: MethodContext) -> None:
        self.keep_pruned_values = self.p.variant == "dynamic" and self.p.pruned_values == "keep"
        super().setup(ctx)
        assert self.masks is not None
        if isinstance(self.p.task_weights, dict):
            unknown = set(self.p.task_weights) - set(ctx.tasks)
            if unknown:
                raise ValueError(f"task_weights names unknown tasks {sorted(unknown)} (tasks: {ctx.tasks})")
        self.settings = resolved_settings(self.p, ctx.dataset, ctx.tasks)
        if self.p.variant == "static":
            self.kept = self.target_keep
            if not self.resuming:
                self._static(ctx)
            return
        self._plan_dynamic(ctx)
        if self.resuming:
            return
        self._erk_init(ctx)

    def task_weights(self, step: int, task_losses: Mapping[str, torch.Tensor]) -> Mapping[str, Any]:
        weights = self.settings["task_weights"]
        return {t: weights.get(t, 1.0) for t in task_losses}

    def before_forward(self, step: int, batch: Mapping[str, torch.Tensor]) -> None:
        if self.p.variant == "dynamic" and not self.final_done:
            self._dynamic_step(step, batch)

    # -- components ------------------------------------------------------------------------------------
    def _theta(self, task: str) -> list[int]:
        """Layer indices of Θ_task = backbone ∪ head/task, backbone first."""
        assert self.masks is not None
        return self.masks.indices(["backbone"]) + self.masks.indices([f"head/{task}"])

    # -- static ----------------------------------------------------------------------------------------
    def _static(self, ctx: MethodContext) -> None:
        masks = self.masks
        assert masks is not None
        scores = self._static_scores(ctx)
        backbone = masks.indices(["backbone"])
        nb = sum(masks.layers[i].numel for i in backbone)
        ranks = _Ranks({t: torch.cat([s.reshape(-1) for s in scores[t]]) for t in ctx.tasks}, nb)
        self.task_counts = exact_unanimous_counts(ranks, self.target_keep)
        keep = ranks.keep(self.task_counts)
        per_task = {}
        for t in ctx.tasks:
            sizes = [masks.layers[i].numel for i in self._theta(t)]
            per_task[t] = list(keep[t].split(sizes))
        combined = unanimous_masks(per_task, len(backbone))
        assert combined is not None
        order = backbone + [i for t in ctx.tasks for i in masks.indices([f"head/{t}"])]
        masks.set_masks(combined, order)
        del ranks

    def _static_scores(self, ctx: MethodContext) -> dict[str, list[torch.Tensor]]:
        """Σ_b |∂L_k/∂W ⊙ W| over Θ_k, per task (on the Xavier copy when ``static_reinit``)."""
        masks = self.masks
        assert masks is not None
        originals = masks.originals()
        saved = [w.detach().clone() for w in originals] if self.p.static_reinit else None
        acc = {t: [torch.zeros_like(originals[i]) for i in self._theta(t)] for t in ctx.tasks}
        model = ctx.model
        try:
            with preserved_buffers(model):
                if saved is not None:
                    with torch.no_grad():
                        for w in originals:
                            nn.init.xavier_normal_(w)
                model.train()
                for _ in range(self.p.num_batches):
                    batch = ctx.next_batch()
                    images = int(batch["image"].shape[0])
                    ctx.compute.add_scoring(forward_images=images, backward_images=images * len(ctx.tasks))
                    outputs = model(batch["image"])
                    losses = ctx.task_losses(outputs, batch)
                    for j, t in enumerate(ctx.tasks):
                        theta = [originals[i] for i in self._theta(t)]
                        grads = torch.autograd.grad(losses[t], theta, retain_graph=j < len(ctx.tasks) - 1,
                                                    allow_unused=True)
                        with torch.no_grad():
                            for a, g, w in zip(acc[t], grads, theta, strict=True):
                                if g is not None:
                                    a.add_((g * w).abs())
        finally:
            if saved is not None:
                with torch.no_grad():
                    for w, s in zip(originals, saved, strict=True):
                        w.copy_(s)
        all_reduce_([a for t in ctx.tasks for a in acc[t]])
        return acc

    # -- dynamic ---------------------------------------------------------------------------------------
    def _plan_dynamic(self, ctx: MethodContext) -> None:
        """ERK densities → exact integer per-layer counts; END in steps (deterministic: recomputed on resume)."""
        masks = self.masks
        assert masks is not None and ctx.target_sparsity is not None
        shapes = [tuple(layer.mask.shape) for layer in masks.layers]
        dens = erk_densities(shapes, 1.0 - ctx.target_sparsity, self.p.erk_power)
        numels = [layer.numel for layer in masks.layers]
        self.layer_keep = apportion([d * n for d, n in zip(dens, numels, strict=True)], self.target_keep, numels)
        self.end = min(int(self.p.end_fraction * ctx.total_iterations), max(ctx.total_iterations - 1, 0))

    def _erk_init(self, ctx: MethodContext) -> None:
        """Random masks at the ERK counts; the stem stays dense (official ``erk_init`` skips conv1)."""
        masks = self.masks
        assert masks is not None
        gen = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 17)
        stem = masks.indices(["backbone"])[0] if self.p.dense_stem else -1
        new = []
        for i, (layer, k) in enumerate(zip(masks.layers, self.layer_keep, strict=True)):
            if i == stem:
                new.append(torch.ones_like(layer.mask))
                continue
            noise = torch.rand(layer.numel, generator=gen).to(layer.mask.device)
            new.append(topk_mask(noise, k))
        masks.set_masks(new)
        self.kept = sum(masks.kept_per_layer())

    def _rate(self, i: int) -> float:
        """Cosine-annealed prune rate (CosineAnnealingLR from prune_rate to 0 over END steps)."""
        if self.end <= 0:
            return 0.0
        return self.p.prune_rate * (1 + math.cos(math.pi * min(i, self.end) / self.end)) / 2

    def _dynamic_step(self, i: int, batch: Mapping[str, torch.Tensor]) -> None:
        """The work of iteration ``i`` before its forward: an update, the final prune, or nothing."""
        if i == self.end:
            self._final_prune(batch)
        elif i < self.end and i % self.settings["update_every"] == 0:
            self._update(i, batch)

    def _update(self, i: int, batch: Mapping[str, torch.Tensor]) -> None:
        masks, ctx = self.masks, self.ctx
        assert masks is not None and ctx is not None
        self.rate = self._rate(i)
        # (1) magnitude prune each layer to d_l·(1 − r) of its size (never growing here)
        alive = masks.kept_per_layer()
        scores = magnitude_scores(masks)
        targets = [min(a, int(round(k * (1 - self.rate)))) for a, k in zip(alive, self.layer_keep, strict=True)]
        masks.set_masks([topk_mask(s.reshape(-1), n) for s, n in zip(scores, targets, strict=True)])
        # (2) per-task gradients with every mask at 1: the stored values (``pruned_values``) decide which
        # network that is (official: pruned weights keep their values; ``zero``: the sparse network)
        grads = self._task_gradients(ctx, batch)
        # (3)+(4) per-task regrowth among pruned positions; the backbone takes the union
        grow = [torch.zeros_like(layer.mask) for layer in masks.layers]
        for t in ctx.tasks:
            for i_layer, g in zip(self._theta(t), grads[t], strict=True):
                layer = masks.layers[i_layer]
                n_grow = self.layer_keep[i_layer] - targets[i_layer]
                if n_grow <= 0:
                    continue
                # every pruned position qualifies when stored values are kept (official: top-k of
                # |g| ⊙ ¬mask); with zeroed storage only those with a gradient do: a regrown weight starts at
                # zero there, and one without gradient would stay zero (and count as pruned) for good
                eligible = ~layer.mask if masks.keep_pruned_values else ~layer.mask & (g > 0)
                score = torch.where(eligible, g, -math.inf).reshape(-1)
                grown = topk_mask(score, min(n_grow, layer.numel - targets[i_layer])) & eligible.reshape(-1)
                grow[i_layer] |= grown.reshape(layer.mask.shape)
        masks.set_masks([layer.mask | g for layer, g in zip(masks.layers, grow, strict=True)])
        self.updates += 1
        self.kept = sum(masks.kept_per_layer())

    def _task_gradients(self, ctx: MethodContext, batch: Mapping[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Σ over batch parts of |∂L_k/∂W| for the layers of Θ_k, with every mask set to 1.

        ``batch`` is the iteration's training batch; with ``regrow_batch: setup`` a batch of the setup stream
        is drawn instead."""
        masks = self.masks
        assert masks is not None
        saved = [m.clone() for m in masks.masks()]
        originals = masks.originals()
        acc = {t: [torch.zeros_like(originals[i]) for i in self._theta(t)] for t in ctx.tasks}
        if self.p.regrow_batch == "setup":
            batch = ctx.next_batch()
            self.setup_batches += 1
        images = int(batch["image"].shape[0])
        ctx.compute.add_scoring(forward_images=images, backward_images=images * len(ctx.tasks))
        model = ctx.model
        try:
            with preserved_buffers(model):
                masks.fill_(True)
                was_training = model.training
                model.train()
                for part in split_batch(batch, self.settings["grad_splits"]):
                    outputs = model(part["image"])
                    losses = ctx.task_losses(outputs, part)
                    for j, t in enumerate(ctx.tasks):
                        theta = [originals[i] for i in self._theta(t)]
                        got = torch.autograd.grad(losses[t], theta, retain_graph=j < len(ctx.tasks) - 1,
                                                  allow_unused=True)
                        for a, g in zip(acc[t], got, strict=True):
                            if g is not None:
                                a.add_(g.detach().abs())
                model.train(was_training)
        finally:
            with torch.no_grad():
                for m, s in zip(masks.masks(), saved, strict=True):
                    m.copy_(s)
        all_reduce_([a for t in ctx.tasks for a in acc[t]])
        return acc

    def _final_prune(self, batch: Mapping[str, torch.Tensor]) -> None:
        """Back to exactly the ERK counts per layer (Σ = target); then the masks stay fixed.

        A weight regrown at zero whose gradient stayed exactly zero (a dead unit) is still zero here and, with
        coupled weight decay, would stay zero for good — it counts as pruned in the sparsity report. So only
        non-zero alive weights fill the per-layer counts; a shortfall (a layer short of live weights, or
        regrowth that found too few pruned positions with a gradient) is filled globally: first by the
        magnitude of the remaining live weights, then by the tasks' gradient at pruned positions (one more
        gradient pass, as an update's regrowth), so every kept weight moves off zero at the next step.
        """
        masks, ctx = self.masks, self.ctx
        assert masks is not None and ctx is not None
        live = [m & (w != 0) for m, w in zip(masks.masks(), masks.originals(), strict=True)]
        available = torch.stack([lv.sum() for lv in live]).tolist()  # one sync (final step only)
        scores = [torch.where(lv, w.detach().abs(), -math.inf) for lv, w in zip(live, masks.originals(), strict=True)]
        counts = [min(a, k) for a, k in zip(available, self.layer_keep, strict=True)]
        new = [topk_mask(s.reshape(-1), n).reshape(s.shape) for s, n in zip(scores, counts, strict=True)]
        deficit = self.target_keep - sum(counts)
        spare = sum(available) - sum(counts)
        if deficit > 0 and spare > 0:
            new = _fill(new, [torch.where(n, -math.inf, s) for n, s in zip(new, scores, strict=True)],
                        min(deficit, spare))
            deficit -= min(deficit, spare)
        if deficit > 0:
            grads = self._task_gradients(ctx, batch)
            best = [torch.zeros_like(m, dtype=torch.float32) for m in masks.masks()]
            for t in ctx.tasks:
                for i, g in zip(self._theta(t), grads[t], strict=True):
                    best[i] = torch.maximum(best[i], g.float())
            new = _fill(new, [torch.where(n, -math.inf, g) for n, g in zip(new, best, strict=True)], deficit)
        masks.set_masks(new)
        self.final_done = True
        self.rate = 0.0
        self.kept = self.target_keep

    # -- logging / state -------------------------------------------------------------------------------
    def log_state(self) -> dict[str, float]:
        out = {**super().log_state(), "prune/round": float(self.updates)}
        if self.p.variant == "dynamic":
            out["prune/rate"] = float(self.rate)
            out["prune/final"] = float(self.final_done)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "updates": self.updates, "final_done": self.final_done,
                "setup_batches": self.setup_batches, "rate": self.rate, "task_counts": dict(self.task_counts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.updates = int(state.get("updates", 0))
        self.final_done = bool(state.get("final_done", False))
        self.rate = float(state.get("rate", 0.0))
        self.task_counts = dict(state.get("task_counts", {}))
        # replay the setup stream so later updates see the batches an uninterrupted run would
        consumed = int(state.get("setup_batches", 0))
        if self.ctx is not None and consumed > self.setup_batches:
            for _ in range(consumed - self.setup_batches):
                self.ctx.next_batch()
        self.setup_batches = consumed

    def extra_artifacts(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.log_state(), "variant": self.p.variant, **self.settings}
        if self.task_counts:
            out["task_keep_counts"] = dict(self.task_counts)
        if self.p.variant == "dynamic":
            out["end_step"] = self.end
        return out
