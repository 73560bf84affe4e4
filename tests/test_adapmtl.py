"""AdapMTL method: parameters, the target rule (freeze θ / fix the mask) without host syncs, logging, resume.

These tests drive the method's hooks with a hand-written loop in the engine's order (task_weights → backward →
before_optimizer_step → optimizer.step → after_optimizer_step) on a tiny model and random data, so they run
in seconds; tests/test_adapmtl_engine.py runs the real engine on synthetic scenes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers.adapmtl import AdapMTL, AdapMTLParams, effective_warmup, lambda_factor
from trainers.methods import MethodContext, build_method, validate_params
from trainers.models import build_model
from trainers.soft_threshold import iter_parametrized
from trainers.sparsity import numel_per_component, sparsity_report

TASKS = {"segment_semantic": 5, "normal": 3, "depth_zbuffer": 1}


def _losses(out, batch):
    return {t: ((out[t] - batch[t][..., : out[t].shape[-2], : out[t].shape[-1]]) ** 2).mean() for t in TASKS}


def _batch(step: int):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(2, 3, 32, 32, generator=g)
    return {"image": x, **{t: torch.randn(2, c, 8, 8, generator=g) * 0.3 for t, c in TASKS.items()}}


def _harness(params: dict, target: float | None, *, iterations: int = 30, lr: float = 1e-2, wd: float = 1e-2,
             seed: int = 0, state_from: dict | None = None):
    torch.manual_seed(seed)
    model = build_model("resnet34", TASKS, width=0.0625, head_channels=16, dropout=0.0)
    method = build_method("adapmtl", params)
    ctx = MethodContext(
        model=model, tasks=list(TASKS), device=torch.device("cpu"), target_sparsity=target,
        total_iterations=iterations, next_batch=lambda: _batch(0), task_losses=_losses,
        make_optimizer=lambda p: torch.optim.Adam(p, lr=lr, betas=(0.5, 0.999), weight_decay=wd),
        make_scheduler=lambda o: None, train_phase=lambda *a, **k: None, workdir=Path("."),
    )
    method.setup(ctx)
    opt = ctx.make_optimizer(model.parameters())
    method.bind_optimizer(opt)
    return model, method, opt


def _step(model, method, opt, step: int, record: dict | None = None):
    batch = _batch(step)
    losses = _losses(model(batch["image"]), batch)
    weights = method.task_weights(step, {t: v.detach() for t, v in losses.items()})
    total = sum(weights[t] * losses[t] for t in TASKS)
    opt.zero_grad(set_to_none=True)
    total.backward()
    method.before_optimizer_step(step)
    if record is not None:
        record.setdefault("frozen", []).append(bool(method._frozen))
    opt.step()
    method.after_optimizer_step(step)


# -- parameters -------------------------------------------------------------------------------------
def test_params_defaults_and_validation():
    p = AdapMTLParams()
    assert (p.theta_init, p.window, p.weighting, p.on_target, p.thresholds) == (
        -20.0, 400, "paper", "fix_mask", "per_component")
    assert p.threshold_lr_scale == 1.0 and p.warmup == 5000
    with pytest.raises(ValueError, match="window"):
        validate_params("adapmtl", {"window": 0})
    with pytest.raises(ValueError, match="weighting"):
        validate_params("adapmtl", {"weighting": "uncertainty"})
    with pytest.raises(ValueError, match="unknown_knob"):
        validate_params("adapmtl", {"unknown_knob": 1})


def test_warmup_scales_with_short_runs():
    assert effective_warmup(AdapMTLParams(), 20000) == 5000      # the paper's NYUv2 value
    assert effective_warmup(AdapMTLParams(), 100000) == 5000
    assert effective_warmup(AdapMTLParams(), 600) == 150          # a quarter of a CPU run
    assert effective_warmup(AdapMTLParams(warmup_fraction=None), 600) == 5000


def test_lambda_factor_units():
    numels = {"backbone": 300, "head/a": 500, "head/b": 500}
    # default: Eq. 6 as written with λ = 5 (Table 5 "w/o λ (=5)"): the factor depends on |W_B|/Σ|W_t|
    assert lambda_factor(numels, AdapMTLParams()) == pytest.approx(1.5)
    assert lambda_factor(numels, AdapMTLParams(lam=1.0)) == pytest.approx(0.3)
    assert lambda_factor(numels, AdapMTLParams(use_lambda=False)) == 1.0  # "w/o λ" differs from the default
    assert lambda_factor(numels, AdapMTLParams(lam=5.0, weighting="official_code")) == 1.0
    # the normalized units (a named departure): the factor is lam on every architecture
    assert lambda_factor(numels, AdapMTLParams(lam=2.0, lam_units="normalized")) == 2.0


# -- the target rule -------------------------------------------------------------------------------
@pytest.mark.parametrize("shortcut", [True, False], ids=["cpu-host-flag", "device-path"])
def test_positive_theta_freezes_from_the_first_step_and_keeps_adam_state(shortcut, monkeypatch):
    import trainers.adapmtl

    monkeypatch.setattr(trainers.adapmtl, "CPU_FLAG_SHORTCUT", shortcut)
    model, method, opt = _harness({"theta_init": 10.0, "on_target": "freeze_thresholds"}, 0.5)
    thetas = {k: v.detach().clone() for k, v in model.soft_thresholds.theta.items()}
    for i in range(5):
        _step(model, method, opt, i)
    for k, v in model.soft_thresholds.theta.items():
        assert torch.equal(v.detach(), thetas[k])
        # the device path restores Adam's fresh state; on the CPU Adam never saw θ (θ.grad = None): no state
        state = opt.state.get(v) or {}
        assert (not state) if shortcut else bool(state)
        assert all(float(state.get(key, 0.0)) == 0.0 for key in ("exp_avg", "exp_avg_sq", "step"))
    assert sparsity_report(model)["overall"] > 0.99


@pytest.mark.parametrize("shortcut", [True, False], ids=["cpu-host-flag", "device-path"])
def test_freeze_matches_the_official_grad_none_rule_exactly(shortcut, monkeypatch):
    """θ trajectory with the sync-free freeze == the official host-side rule (θ.grad = None when ≥ target);
    on the CPU (the host reads the flag) it *is* that rule: bit for bit."""
    import trainers.adapmtl

    monkeypatch.setattr(trainers.adapmtl, "CPU_FLAG_SHORTCUT", shortcut)
    params = {"theta_init": -4.0, "on_target": "freeze_thresholds", "weighting": "equal"}
    iters = 24
    # find a target the run crosses in both directions (the rule is re-evaluated every step)
    probe_model, probe, probe_opt = _harness(params, None)
    spars = []
    for i in range(iters):
        _step(probe_model, probe, probe_opt, i)
        spars.append(sparsity_report(probe_model)["overall"])
    target = spars[iters // 3]

    model, method, opt = _harness(params, target)
    record: dict = {}
    for i in range(iters):
        _step(model, method, opt, i, record)

    ref_model, ref, ref_opt = _harness(params, None)  # same init; the rule applied by hand, with syncs
    ref_frozen = []
    for i in range(iters):
        batch = _batch(i)
        losses = _losses(ref_model(batch["image"]), batch)
        ref_opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        frozen = sparsity_report(ref_model)["overall"] >= target
        ref_frozen.append(frozen)
        if frozen:
            for theta in ref_model.soft_thresholds.parameters_list():
                theta.grad = None
        ref_opt.step()
    assert record["frozen"] == ref_frozen
    assert any(ref_frozen) and not all(ref_frozen)
    for a, b in zip(model.soft_thresholds.parameters_list(), ref_model.soft_thresholds.parameters_list()):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
        if shortcut:
            assert torch.equal(a.detach(), b.detach())
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(opt.state[a][key], ref_opt.state[b][key], rtol=1e-5, atol=1e-9)
            if shortcut:
                assert torch.equal(opt.state[a][key], ref_opt.state[b][key])


def test_fix_mask_freezes_the_mask_and_keeps_effective_weights_continuous():
    params = {"theta_init": -4.0, "weighting": "equal"}
    probe_model, probe, probe_opt = _harness(params, None)
    for i in range(12):
        _step(probe_model, probe, probe_opt, i)
    target = sparsity_report(probe_model)["overall"] * 0.97  # reached around step 10

    model, method, opt = _harness(params, target)
    fixed_at = None
    for i in range(30):
        batch = _batch(i)
        losses = _losses(model(batch["image"]), batch)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        before = {n: m.weight.detach().clone() for mods in method.layers.values() for n, m in mods}
        was_fixed = bool(model.soft_thresholds.fixed)
        method.before_optimizer_step(i)
        if fixed_at is None and bool(model.soft_thresholds.fixed):
            fixed_at = i
            sparsity_at_fix = sparsity_report(model)["overall"]
            assert not was_fixed and sparsity_at_fix >= target
            for mods in method.layers.values():
                for n, m in mods:  # the switch does not move any effective weight
                    torch.testing.assert_close(m.weight.detach(), before[n], rtol=0, atol=1e-7)
            masks = {n: m.parametrizations["weight"][0].mask.clone() for mods in method.layers.values()
                     for n, m in mods}
            thetas = [t.detach().clone() for t in model.soft_thresholds.parameters_list()]
        opt.step()
        method.after_optimizer_step(i)
        if i % 5 == 0:
            method.log_state()  # the host learns "fixed" only here
    assert fixed_at is not None and fixed_at < 25
    assert sparsity_report(model)["overall"] == pytest.approx(sparsity_at_fix, abs=1e-12)
    for mods in method.layers.values():
        for n, m in mods:
            mask = m.parametrizations["weight"][0].mask
            assert torch.equal(mask, masks[n])
            assert bool((m.weight.detach()[~mask] == 0).all())
    for a, b in zip(model.soft_thresholds.parameters_list(), thetas):
        assert torch.equal(a.detach(), b)
    assert model.soft_thresholds.fixed_known


def test_minus_1000_stays_dense_in_the_loop():
    model, method, opt = _harness({"theta_init": -1000.0}, 0.9)
    for i in range(10):
        _step(model, method, opt, i)
    assert sparsity_report(model)["overall"] == 0.0
    assert not bool(method._frozen)


def test_threshold_lr_scale_speeds_theta_up():
    thetas = {}
    for scale in (1.0, 10.0):
        model, method, opt = _harness({"theta_init": -20.0, "threshold_lr_scale": scale, "weighting": "equal"},
                                      0.99, lr=1e-3)
        for i in range(5):
            _step(model, method, opt, i)
        thetas[scale] = float(model.soft_thresholds.theta_value("backbone").detach())
    moved = {s: t + 20.0 for s, t in thetas.items()}
    assert moved[1.0] > 0  # weight decay raises θ (the official mechanism)
    assert moved[10.0] == pytest.approx(10 * moved[1.0], rel=0.05)


# -- logging and resume ----------------------------------------------------------------------------
def test_log_state_names_and_requested_vs_achieved():
    model, method, opt = _harness({"theta_init": -4.0, "thresholds": "backbone_and_heads"}, 0.5)
    _step(model, method, opt, 0)
    logged = method.log_state()
    for comp in ("backbone", *(f"head/{t}" for t in TASKS)):
        assert f"threshold/{comp}" in logged and f"theta/{comp}" in logged
    assert logged["threshold/head/normal"] == logged["threshold/head/depth_zbuffer"]
    assert {"adapmtl/frozen", "adapmtl/mask_fixed", "adapmtl/target_sparsity",
            "adapmtl/beta/normal", "adapmtl/overall_sparsity_at_check"} <= set(logged)
    assert logged["adapmtl/cpu_kernel"] == float(model.soft_thresholds.cpu_kernel)  # which code ran the passes
    art = method.extra_artifacts()
    assert art["requested_sparsity"] == 0.5
    assert art["achieved_sparsity"] == pytest.approx(sparsity_report(model)["overall"])
    assert "achieved_sparsity/head/normal" in art


def test_method_state_round_trip_reproduces_theta_and_beta():
    params = {"theta_init": -4.0, "window": 3, "warmup": 2, "warmup_fraction": None}
    full_model, full, full_opt = _harness(params, 0.4, iterations=16)
    for i in range(16):
        _step(full_model, full, full_opt, i)

    part_model, part, part_opt = _harness(params, 0.4, iterations=16)
    for i in range(8):
        _step(part_model, part, part_opt, i)
    saved = {"model": part_model.state_dict(), "opt": part_opt.state_dict(), "method": part.state_dict()}
    model, method, opt = _harness(params, 0.4, iterations=16, seed=123)  # fresh set-up, other init
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    method.load_state_dict(saved["method"])
    for i in range(8, 16):
        _step(model, method, opt, i)
    for a, b in zip(model.soft_thresholds.parameters_list(), full_model.soft_thresholds.parameters_list()):
        torch.testing.assert_close(a.detach(), b.detach())
    torch.testing.assert_close(method.weighting.beta, full.weighting.beta)
    for (_, wa, pa), (_, wb, pb) in zip(iter_parametrized(method.layers), iter_parametrized(full.layers)):
        torch.testing.assert_close(wa, wb)
        assert torch.equal(pa.mask, pb.mask)


def test_registered_and_metadata():
    method = build_method("adapmtl", {})
    assert isinstance(method, AdapMTL) and method.metadata.bibtex_key == "xiang2024adapmtl"


def test_search_space_is_valid_for_the_params():
    from search_spaces import check_param, representative, space_for

    spec = space_for("adapmtl")
    assert {"theta_init", "lam", "window"} <= set(spec.space)
    for name, domain in spec.space.items():
        check_param(name, domain)
    validate_params("adapmtl", {**spec.fixed, **{k: representative(v) for k, v in spec.space.items()}})


def test_numel_helper_sees_every_component():
    model, method, _ = _harness({}, 0.9)
    assert set(method.numels) == {"backbone", *(f"head/{t}" for t in TASKS)}
    assert method.numels == numel_per_component(model)


class _NoSync:
    """Make every device→host read (``item``, ``bool``, ``float``, ``int``, ``tolist``) raise while active."""

    NAMES = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")

    def __enter__(self):
        self.saved = {n: getattr(torch.Tensor, n) for n in self.NAMES}

        def boom(*args, **kwargs):
            raise AssertionError("host sync in a per-step hook")

        for n in self.NAMES:
            setattr(torch.Tensor, n, boom)

    def __exit__(self, *exc):
        for n, f in self.saved.items():
            setattr(torch.Tensor, n, f)


@pytest.mark.parametrize("params", [
    {"theta_init": -4.0, "on_target": "fix_mask", "window": 2, "warmup": 1, "warmup_fraction": None},
    {"theta_init": -4.0, "on_target": "freeze_thresholds", "weighting": "official_code", "window": 2,
     "warmup": 0, "warmup_fraction": None},
])
def test_per_step_hooks_never_read_device_values(params, monkeypatch):
    """The CPU stand-in for CUDA sync debugging: the hooks run with every host read disabled."""
    import trainers.adapmtl

    monkeypatch.setattr(trainers.adapmtl, "CPU_FLAG_SHORTCUT", False)  # the CUDA code path
    model, method, opt = _harness(params, 0.2)
    pre, post = method._pre_step, method._post_step

    def guarded(fn):
        def run(*args):
            with _NoSync():
                fn(*args)
        return run

    method._pre_step, method._post_step = guarded(pre), guarded(post)
    for i in range(6):
        batch = _batch(i)
        losses = _losses(model(batch["image"]), batch)
        with _NoSync():
            weights = method.task_weights(i, {t: v.detach() for t, v in losses.items()})
        opt.zero_grad(set_to_none=True)
        sum(weights[t] * losses[t] for t in TASKS).backward()
        with _NoSync():
            method.before_optimizer_step(i)
        opt.step()
        with _NoSync():
            method.after_optimizer_step(i)
    assert method.log_state()["adapmtl/frozen"] in (0.0, 1.0)


def test_backward_count_and_skipped_all_ones_mask_change_nothing():
    """The fast CPU path (zeros counted by the backward, all-ones masks skipped before the fix) trains
    bit-identically to the direct path (zeros counted separately, mask always applied), across the fix."""
    params = {"theta_init": -4.0, "weighting": "equal"}
    probe_model, probe, probe_opt = _harness(params, None)
    for i in range(12):
        _step(probe_model, probe, probe_opt, i)
    target = sparsity_report(probe_model)["overall"] * 0.97  # reached around step 10

    fast = _harness(params, target)
    slow = _harness(params, target)
    slow_bank = slow[0].soft_thresholds
    assert fast[0].soft_thresholds.masks_all_ones and fast[0].soft_thresholds.counter is not None
    slow_bank.counter = None
    for i in range(24):
        slow_bank.masks_all_ones = False
        for model, method, opt in (fast, slow):
            _step(model, method, opt, i)
            if i % 5 == 0:
                method.log_state()
    assert bool(fast[0].soft_thresholds.fixed) and not fast[0].soft_thresholds.masks_all_ones
    assert int(fast[1]._reached_step) == int(slow[1]._reached_step) >= 0
    for (_, w_fast, p_fast), (_, w_slow, p_slow) in zip(iter_parametrized(fast[1].layers),
                                                        iter_parametrized(slow[1].layers), strict=True):
        assert torch.equal(w_fast, w_slow) and torch.equal(p_fast.mask, p_slow.mask)
    for a, b in zip(fast[0].soft_thresholds.parameters_list(), slow_bank.parameters_list(), strict=True):
        assert torch.equal(a, b)


def test_a_step_with_two_backward_passes_falls_back_to_counting():
    model, method, opt = _harness({"theta_init": -3.0, "weighting": "equal"}, 0.99)
    batch = _batch(0)
    opt.zero_grad(set_to_none=True)
    for _ in range(2):  # e.g. a method that accumulates two backward passes in one step
        sum(_losses(model(batch["image"]), batch).values()).backward()
    method.before_optimizer_step(0)
    direct = sum(int((m.weight == 0).sum()) for mods in method.layers.values() for _, m in mods)
    assert int(method._zeros) == direct > 0
    assert model.soft_thresholds.counter.layers == 0  # reset for the next step


def test_lambda_factor_on_the_models_is_eq6_as_written():
    """λ = 5 on DeepLab-ResNet34 is a factor ≈ 1.5 (its |W_B|/Σ|W_t| ≈ 0.30), on MobileNetV2 ≈ 0.12: Eq. 6's
    architecture dependence, which the normalized units (a named option) remove."""
    from trainers.models import build_model
    from trainers.sparsity import numel_per_component

    heads = {"segment_semantic": 13, "normal": 3, "depth_zbuffer": 1}
    resnet = numel_per_component(build_model("resnet34", heads, width=0.125))
    mobile = numel_per_component(build_model("mobilenetv2", heads, width=0.125))
    assert lambda_factor(resnet, AdapMTLParams()) == pytest.approx(1.5, abs=0.05)
    assert lambda_factor(mobile, AdapMTLParams()) < 0.2
    assert lambda_factor(resnet, AdapMTLParams(use_lambda=False)) == 1.0
    assert lambda_factor(mobile, AdapMTLParams(lam_units="normalized", lam=1.0)) == 1.0


def test_fused_group_nodes_train_like_the_per_layer_path():
    """The default fused path (one node per threshold group, trainers.soft_threshold_fused) against the
    per-layer path through the target rule and the mask fix: the same step reaches the target, the same
    masks are fixed, and weights and θ agree to float32 rounding (θ's gradient is the same sum in another
    order, so bitwise equality is not expected)."""
    params = {"theta_init": -4.0, "weighting": "equal"}
    probe_model, probe, probe_opt = _harness(params, None)
    for i in range(12):
        _step(probe_model, probe, probe_opt, i)
    target = sparsity_report(probe_model)["overall"] * 0.97

    fused = _harness(params, target)
    per_layer = _harness(params, target)
    assert fused[0].soft_thresholds.fused
    per_layer[0].soft_thresholds.fused = False
    for i in range(24):
        for model, method, opt in (fused, per_layer):
            _step(model, method, opt, i)
            if i % 5 == 0:
                method.log_state()
    assert bool(fused[0].soft_thresholds.fixed)
    assert int(fused[1]._reached_step) == int(per_layer[1]._reached_step) >= 0
    for (_, w_f, p_f), (_, w_p, p_p) in zip(iter_parametrized(fused[1].layers),
                                            iter_parametrized(per_layer[1].layers), strict=True):
        assert torch.equal(p_f.mask, p_p.mask)
        torch.testing.assert_close(w_f, w_p, rtol=1e-4, atol=1e-6)
    for a, b in zip(fused[0].soft_thresholds.parameters_list(), per_layer[0].soft_thresholds.parameters_list(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_threshold_weight_decay_is_coupled_l2_on_theta_alone():
    """``threshold_weight_decay`` gives θ its own coupled L2 (grad += wd_θ·θ) and leaves every other
    parameter's update exactly as the run's; equal to the run's decay it changes nothing."""
    def run(extra: dict):
        model, method, opt = _harness({"theta_init": -6.0, **extra}, 0.99, iterations=10, wd=1e-4)
        for step in range(6):
            _step(model, method, opt, step)
        thetas = [p.detach().clone() for p in method.bank.parameters_list()]
        others = {n: p.detach().clone() for n, p in model.named_parameters()
                  if all(p is not t for t in method.bank.parameters_list())}
        return thetas, others

    base_t, base_w = run({})
    same_t, same_w = run({"threshold_weight_decay": 1e-4})
    strong_t, strong_w = run({"threshold_weight_decay": 0.5})
    assert all(torch.equal(a, b) for a, b in zip(base_t, same_t))
    assert all(torch.equal(base_w[k], same_w[k]) for k in base_w)
    # θ < 0, so a strong decay dominates θ's gradient: Adam then moves every θ up by ≈ lr per step (the most
    # it can), where the loss gradient held some components back under the run's tiny decay
    assert all(float(t) == pytest.approx(-6.0 + 6 * 1e-2, abs=2e-3) for t in strong_t)
    assert sum(float(t) for t in strong_t) > sum(float(t) for t in base_t) + 0.02
    assert AdapMTLParams(threshold_weight_decay=0.5).threshold_weight_decay == 0.5
    with pytest.raises(ValueError):
        validate_params("adapmtl", {"threshold_weight_decay": -1.0})


def test_method_weight_decay_sets_the_runs_adam_group():
    model, method, opt = _harness({"theta_init": -6.0, "weight_decay": 0.02}, 0.9, wd=1e-4)
    assert {g["weight_decay"] for g in opt.param_groups} == {0.02}
    _step(model, method, opt, 0)
    state = opt.state_dict()
    fresh = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-4)
    fresh.load_state_dict(state)  # a resumed run gets the method's decay back with the optimizer state
    assert fresh.param_groups[0]["weight_decay"] == 0.02
    _, _, default = _harness({"theta_init": -6.0}, 0.9, wd=1e-4)
    assert default.param_groups[0]["weight_decay"] == 1e-4
