"""Shared helpers for the mask/baseline tests: a tiny two-component model and a hand-built MethodContext.

The hand-built context mirrors what ``trainers.engine.train`` gives a method (setup stream, task losses,
optimizer factory, ``train_phase``) but with a model small enough that a test takes milliseconds, and
with MSE task losses so the expected masks can be computed independently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from trainers.methods import MethodContext, PruningMethod

TASKS = ("a", "b")
CHANNELS = {"a": 3, "b": 1}


class TinyMTL(nn.Module):
    """backbone (conv-BN-ReLU-conv + a Linear-free stem) and one 1×1-conv head per task."""

    def __init__(self, tasks: Mapping[str, int] = CHANNELS, width: int = 6) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({t: nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, c, 1))
                                    for t, c in tasks.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x)
        return {t: h(f) for t, h in self.heads.items()}


def batch_stream(seed: int, batch: int = 4, size: int = 8, tasks: Mapping[str, int] = CHANNELS) -> Callable[[], dict]:
    """Deterministic random batches (same seed → same sequence)."""
    gen = torch.Generator().manual_seed(seed)

    def nxt() -> dict[str, torch.Tensor]:
        out = {"image": torch.randn(batch, 3, size, size, generator=gen)}
        for t, c in tasks.items():
            out[t] = torch.randn(batch, c, size, size, generator=gen)
        return out

    return nxt


def mse_losses(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {t: (outputs[t] - batch[t]).pow(2).mean() for t in outputs}


def make_ctx(model: nn.Module, target: float, *, iterations: int = 20, seed: int = 0, stream_seed: int = 1,
             workdir: Path | None = None, resuming: bool = False, dense_checkpoint: Path | None = None,
             lr: float = 1e-2, weight_decay: float = 1e-2) -> MethodContext:
    nxt = batch_stream(stream_seed)

    def make_optimizer(params):
        return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)

    def make_scheduler(opt):
        return torch.optim.lr_scheduler.StepLR(opt, step_size=1000, gamma=0.5)

    def train_phase(n: int, before_step=None, after_step=None) -> None:
        opt = make_optimizer(model.parameters())
        model.train()
        for i in range(n):
            b = nxt()
            loss = sum(mse_losses(model(b["image"]), b).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if before_step:
                before_step(i)
            opt.step()
            if after_step:
                after_step(i)

    ctx = MethodContext(model=model, tasks=list(model.heads), device=torch.device("cpu"), target_sparsity=target,
                        total_iterations=iterations, next_batch=nxt, task_losses=mse_losses,
                        make_optimizer=make_optimizer, make_scheduler=make_scheduler, train_phase=train_phase,
                        workdir=workdir or Path("."), seed=seed, dense_checkpoint=dense_checkpoint)
    if resuming:
        ctx.extras["resuming"] = True
    return ctx


def run_loop(method: PruningMethod, ctx: MethodContext, steps: int | None = None, start: int = 0,
             on_step: Callable[[int], None] | None = None, stream_seed: int = 99) -> torch.optim.Optimizer:
    """The engine's step order (before_forward, forward, weighted loss, backward, hooks, Adam + coupled weight
    decay)."""
    model = ctx.model
    opt = ctx.make_optimizer(model.parameters())
    nxt = batch_stream(stream_seed)
    model.train()
    for step in range(start, steps if steps is not None else ctx.total_iterations):
        b = nxt()
        method.before_forward(step, b)
        losses = ctx.task_losses(model(b["image"]), b)
        w = method.task_weights(step, {t: v.detach() for t, v in losses.items()})
        loss = sum(w[t] * losses[t] for t in losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        method.before_optimizer_step(step)
        opt.step()
        method.after_optimizer_step(step)
        if on_step:
            on_step(step)
    return opt


def prunable_total(model: nn.Module) -> int:
    from trainers.sparsity import numel_per_component

    return sum(numel_per_component(model).values())


def zero_total(model: nn.Module) -> int:
    from trainers.sparsity import zero_counts

    return int(sum(int(v) for v in zero_counts(model).values()))


def test_kit_model_has_components() -> None:
    from trainers.sparsity import prunable_weights

    layers = prunable_weights(TinyMTL())
    assert list(layers) == ["backbone", "head/a", "head/b"]
    assert [len(v) for v in layers.values()] == [2, 2, 2]
