"""LTH: dense phase, global magnitude prune, rewind to the initial values; the mask is fixed afterwards."""

from __future__ import annotations

import pytest
import torch
from test_baselines_kit import TinyMTL, make_ctx, run_loop, zero_total

from baselines.lth import round_keeps
from trainers.masking import keep_count
from trainers.methods import build_method


def _init_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_round_keeps_geometric_and_exact() -> None:
    assert round_keeps(1000, 0.9, 1) == [100]
    keeps = round_keeps(1000, 0.9, 2)
    assert keeps == [316, 100]


@pytest.mark.parametrize("rounds", [1, 2])
def test_lth_rewinds_survivors_to_init_and_keeps_the_mask(rounds: int) -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    init = _init_weights(model)
    method = build_method("lth", {"rounds": rounds, "dense_iterations": 6})
    ctx = make_ctx(model, 0.8, iterations=10)
    method.setup(ctx)
    total = method.masks.total
    assert zero_total(model) == total - keep_count(total, 0.8)
    # right after the rewind: every surviving weight equals its initial value, every other parameter too
    for layer in method.masks.layers:
        plain = f"{layer.name}.weight"
        assert torch.equal(layer.original[layer.mask], init[plain][layer.mask])
        assert torch.all(layer.original[~layer.mask] == 0)
    state = model.state_dict()
    for k, v in init.items():
        if not k.endswith(".weight") or k.startswith("backbone.1"):
            assert torch.equal(state[k], v), k
    # the mask is chosen by the trained magnitudes, not the initial ones (it differs from init top-k)
    masks_before = [m.clone() for m in method.masks.masks()]
    run_loop(method, ctx)
    assert all(torch.equal(a, b) for a, b in zip(masks_before, method.masks.masks()))
    assert zero_total(model) == total - keep_count(total, 0.8)
    assert method.extra_artifacts()["dense_source"] == "trained" and method.rounds_done == rounds


def test_lth_late_rewind_uses_step_k_weights() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    snap: dict[str, torch.Tensor] = {}
    method = build_method("lth", {"rewind_step": 2, "dense_iterations": 5})
    ctx = make_ctx(model, 0.5, iterations=5)
    inner = ctx.train_phase

    def spy(n, before_step=None, after_step=None):
        def after(i):
            after_step(i)
            if i == 1:
                snap.update({k: v.clone() for k, v in model.state_dict().items() if not k.endswith(".mask")})
        inner(n, before_step, after)

    ctx.train_phase = spy
    method.setup(ctx)
    for layer in method.masks.layers:
        key = f"{layer.name}.parametrizations.weight.original"
        assert torch.equal(layer.original[layer.mask], snap[key][layer.mask])


def test_lth_reuses_a_matching_dense_checkpoint_and_refuses_others(tmp_path) -> None:
    torch.manual_seed(0)
    dense = TinyMTL()
    init = _init_weights(dense)
    with torch.no_grad():
        for p in dense.parameters():
            p.add_(torch.randn_like(p))  # "trained" dense weights
    cfg = {"method": "dense", "seed": 0, "data": {"tasks": ["a", "b"]},
           "train": {"iterations": 10, "lr": 1e-2, "betas": [0.5, 0.999], "weight_decay": 1e-2,
                     "lr_decay_every": 1000, "lr_decay": 0.5}}
    path = tmp_path / "final.pt"
    torch.save({"config": cfg, "model": dense.state_dict()}, path)

    model = TinyMTL()
    model.load_state_dict(init)
    method = build_method("lth")
    ctx = make_ctx(model, 0.7, iterations=10, dense_checkpoint=path)
    ctx.train_phase = lambda *a, **k: pytest.fail("the dense phase must come from the checkpoint")
    method.setup(ctx)
    assert method.dense_source == "checkpoint"
    flat_dense = torch.cat([dense.state_dict()[f"{ly.name}.weight"].abs().reshape(-1) for ly in method.masks.layers])
    kept_scores = torch.cat([dense.state_dict()[f"{ly.name}.weight"].abs()[ly.mask] for ly in method.masks.layers])
    assert kept_scores.min() >= torch.sort(flat_dense, descending=True).values[method.target_keep - 1]

    cfg["seed"] = 1
    torch.save({"config": cfg, "model": dense.state_dict()}, path)
    other = build_method("lth", {"dense_iterations": 3})
    ctx2 = make_ctx(TinyMTL(), 0.7, iterations=3, dense_checkpoint=path)
    other.setup(ctx2)
    assert other.dense_source == "trained"


def test_lth_resume_skips_the_dense_phase() -> None:
    ctx = make_ctx(TinyMTL(), 0.7, resuming=True)
    ctx.train_phase = lambda *a, **k: pytest.fail("no dense phase on resume")
    method = build_method("lth")
    method.setup(ctx)
    assert method.masks is not None and method.kept == method.target_keep
