"""Starting a pruning method from the dense reference's weights instead of retraining them (LTH, IMP).

LTH's first round and IMP's first training phase are a dense training run with the run's own seed,
optimizer, schedule and iterations, i.e. exactly the sweep's dense reference. When the orchestrator hands
over that reference's final checkpoint (``ctx.dense_checkpoint``) and it matches (method ``dense``, same
seed, tasks, iterations, optimizer settings and state-dict shapes), its weights replace the retraining. The
steps it stands for are recorded in the run's compute ledger as *reused*, so tables still show what the
method costs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from trainers import checkpoint
from trainers.masking import is_mask_key
from trainers.methods import MethodContext
from trainers.sparsity import unwrap

log = logging.getLogger(__name__)

__all__ = ["dense_weights_for", "plain_key", "state_without_masks"]


def state_without_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state (weights, biases, BatchNorm), mask buffers left out."""
    return {k: v.detach().clone() for k, v in unwrap(model).state_dict().items() if not is_mask_key(k)}


def plain_key(key: str) -> str:
    """``x.parametrizations.weight.original`` -> ``x.weight`` (the key of an unparametrized model)."""
    return key.replace(".parametrizations.weight.original", ".weight")


def dense_weights_for(ctx: MethodContext, dense_iters: int, who: str) -> dict[str, torch.Tensor] | None:
    """The matching dense reference's final state, keyed like ``ctx.model`` (no masks); None if unusable."""
    path = ctx.dense_checkpoint
    if path is None or not Path(path).exists():
        return None
    saved = checkpoint.load(path, map_location=ctx.device)  # weights_only: a dense file cannot run code
    why = _mismatch(saved, ctx, dense_iters)
    if why:
        log.warning("%s: not reusing dense checkpoint %s (%s); training the dense phase", who, path, why)
        return None
    weights = saved["model"]
    ctx.compute.add_reused(dense_iters)
    return {k: weights[plain_key(k)] for k in state_without_masks(ctx.model)}


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
    for key, tensor in state_without_masks(ctx.model).items():
        plain = plain_key(key)
        if plain not in weights or tuple(weights[plain].shape) != tuple(tensor.shape):
            return f"model differs at {plain}"
    return ""
