"""CUDA-only checks of the round-3 AdapMTL path (skipped without a GPU; benchmarks/gpu_check.sh runs them).

On an accelerator the fused soft threshold takes its tensor-α branch (no host read of α) and the flat
bool "pruned" mask; it must equal the per-layer path there as on the CPU, and one AdapMTL step (forward,
backward, the target rule) must not synchronise the host with the device.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

#: ``ADAPMTL_TEST_DEVICE=cpu`` runs these same tests on the CPU with the accelerator code path forced
#: (benchmarks/gpu_check.sh --dry-run checks them that way before a GPU is lent); the sync check is then void.
DEVICE = os.environ.get("ADAPMTL_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def _accelerator_path(monkeypatch):
    import trainers.adapmtl
    import trainers.soft_threshold_fused

    monkeypatch.setattr(trainers.soft_threshold_fused, "CPU_SCALAR_ALPHA", DEVICE == "cuda")
    monkeypatch.setattr(trainers.adapmtl, "CPU_FLAG_SHORTCUT", DEVICE == "cuda")


@contextlib.contextmanager
def _no_sync():
    """``torch.cuda.set_sync_debug_mode("error")`` for the block (nothing on the CPU)."""
    if DEVICE != "cuda":
        yield
        return
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")

TASKS = {"segment_semantic": 5, "normal": 3, "depth_zbuffer": 1}


def _model(fused: bool, *, mask: bool, channels_last: bool):
    from trainers.adapmtl import threshold_groups
    from trainers.models import build_model
    from trainers.soft_threshold import NonzeroCounter, install_soft_thresholds, iter_parametrized
    from trainers.sparsity import prunable_weights

    torch.manual_seed(0)
    model = build_model("resnet34", TASKS, width=0.0625, head_channels=16, dropout=0.0).to(DEVICE)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    layers = prunable_weights(model)
    bank = install_soft_thresholds(model, layers, threshold_groups(list(layers), "per_component"), -3.0,
                                   with_mask=mask, fused=fused)
    bank.counter = NonzeroCounter(torch.device(DEVICE))
    if mask:
        g = torch.Generator(device=DEVICE).manual_seed(1)
        for _, _, par in iter_parametrized(layers):
            par.mask.copy_(torch.rand(par.mask.shape, generator=g, device=DEVICE) > 0.3)
    return model, layers, bank


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_equals_per_layer_on_cuda(mask, channels_last):
    from trainers.soft_threshold import iter_parametrized

    outs = []
    for fused in (True, False):
        model, layers, bank = _model(fused, mask=mask, channels_last=channels_last)
        x = torch.randn(2, 3, 32, 32, device=DEVICE, generator=torch.Generator(device=DEVICE).manual_seed(7))
        out = model(x)
        sum(v.square().mean() + v.sum() for v in out.values()).backward()
        outs.append((out, [w.grad.clone() for _, w, _ in iter_parametrized(layers)],
                     [t.grad.clone() for t in bank.parameters_list()]))
    (of, gf, tf), (op, gp, tp) = outs
    for k in of:
        assert torch.equal(of[k], op[k]), k
    for a, b in zip(gf, gp, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(tf, tp, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_an_adapmtl_step_does_not_sync_on_cuda():
    from pathlib import Path

    from trainers.methods import MethodContext, build_method
    from trainers.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet34", TASKS, width=0.0625, head_channels=16, dropout=0.0).to(DEVICE)

    def losses(out, batch):
        return {t: ((out[t] - batch[t][..., : out[t].shape[-2], : out[t].shape[-1]]) ** 2).mean() for t in TASKS}

    def batch():
        return {"image": torch.randn(2, 3, 32, 32, device=DEVICE),
                **{t: torch.randn(2, c, 8, 8, device=DEVICE) for t, c in TASKS.items()}}

    method = build_method("adapmtl", {"theta_init": -4.0, "window": 2, "warmup": 1, "warmup_fraction": None})
    ctx = MethodContext(model=model, tasks=list(TASKS), device=torch.device(DEVICE), target_sparsity=0.3,
                        total_iterations=20, next_batch=batch, task_losses=losses,
                        make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-2),
                        make_scheduler=lambda o: None, train_phase=lambda *a, **k: None, workdir=Path("."))
    method.setup(ctx)
    opt = ctx.make_optimizer(model.parameters())
    method.bind_optimizer(opt)
    for step in range(4):
        b = batch()
        with _no_sync():  # the engine's step order (trainers/engine.py), hooks included
            method.before_forward(step, b)
            out = model(b["image"])
            ls = losses(out, b)
            w = method.task_weights(step, {t: v.detach() for t, v in ls.items()})
            total = sum(w[t] * ls[t] for t in TASKS)
            opt.zero_grad(set_to_none=True)
            total.backward()
            method.before_optimizer_step(step)
        opt.step()
        method.after_optimizer_step(step)
    assert method.log_state()["adapmtl/frozen"] in (0.0, 1.0)
