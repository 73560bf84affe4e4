"""Soft-threshold reparameterization: values, exact zeros, sub-gradients (paper Eq. 4–5, supplement Eq. 1)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from trainers.adapmtl import threshold_groups
from trainers.models import build_model
from trainers.soft_threshold import (
    install_soft_thresholds,
    iter_parametrized,
    soft_threshold,
    soft_threshold_reference,
)
from trainers.sparsity import param_counts, prunable_weights, sparsity_report

TASKS = {"segment_semantic": 13, "normal": 3, "depth_zbuffer": 1}


def _random_case(seed: int, theta: float = -3.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 4, 3, 3, generator=g, dtype=torch.float64) * 0.1
    upstream = torch.randn(w.shape, generator=g, dtype=torch.float64)
    return w, torch.tensor(theta, dtype=torch.float64), upstream


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_matches_formula_and_zeros_are_exact(seed):
    w, theta, _ = _random_case(seed)
    alpha = torch.sigmoid(theta)
    w[0, 0, 0, 0] = alpha  # |W| == α exactly: must be pruned (ReLU(0) = 0)
    w[0, 0, 0, 1] = -alpha
    out = soft_threshold(w, alpha)
    torch.testing.assert_close(out, soft_threshold_reference(w, alpha), rtol=0, atol=0)
    pruned = w.abs() <= alpha
    assert pruned.any() and (~pruned).any()
    assert bool((out[pruned] == 0).all())
    assert bool((out[~pruned] != 0).all())
    torch.testing.assert_close(out[~pruned], (w - alpha * torch.sign(w))[~pruned])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_autograd_and_hand_formulas(seed):
    w0, theta0, upstream = _random_case(seed)
    # custom function
    w1, t1 = w0.clone().requires_grad_(), theta0.clone().requires_grad_()
    (soft_threshold(w1, torch.sigmoid(t1)) * upstream).sum().backward()
    # plain autograd of the formula
    w2, t2 = w0.clone().requires_grad_(), theta0.clone().requires_grad_()
    (soft_threshold_reference(w2, torch.sigmoid(t2)) * upstream).sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad)
    torch.testing.assert_close(t1.grad, t2.grad)
    # by hand: dL/dW = g ⊙ 1[|W|>α]; dL/dθ = −σ'(θ) Σ_{|W|>α} g·sign(W)   (supplement Eq. 1)
    alpha = torch.sigmoid(theta0)
    keep = (w0.abs() > alpha).double()
    torch.testing.assert_close(w1.grad, upstream * keep)
    sig_prime = alpha * (1 - alpha)
    torch.testing.assert_close(t1.grad, -sig_prime * (upstream * torch.sign(w0) * keep).sum())


def test_masked_variant_zeroes_masked_entries_and_their_gradients():
    w0, theta0, upstream = _random_case(3)
    mask = torch.rand(w0.shape, generator=torch.Generator().manual_seed(9)) > 0.5
    w = w0.clone().requires_grad_()
    out = soft_threshold(w, torch.tensor(0.0, dtype=torch.float64), mask)
    torch.testing.assert_close(out, w0 * mask)  # α = 0: the fixed-mask mode's Ŵ = mask ⊙ W
    (out * upstream).sum().backward()
    torch.testing.assert_close(w.grad, upstream * mask)


def test_theta_minus_1000_is_exactly_dense():
    w, _, _ = _random_case(4)
    alpha = torch.sigmoid(torch.tensor(-1000.0, dtype=torch.float64))
    assert alpha.item() == 0.0
    torch.testing.assert_close(soft_threshold(w, alpha), w, rtol=0, atol=0)


def _model():
    torch.manual_seed(0)
    return build_model("resnet34", TASKS, width=0.125)


@pytest.mark.parametrize("mode,expected", [("per_component", 4), ("shared", 1), ("backbone_and_heads", 2)])
def test_install_registers_each_theta_once(mode, expected):
    model = _model()
    layers = prunable_weights(model)
    n_before = len(list(model.parameters()))
    bank = install_soft_thresholds(model, layers, threshold_groups(list(layers), mode), -20.0)
    params = list(model.parameters())
    thetas = bank.parameters_list()
    assert len(thetas) == expected
    assert len(params) == n_before + expected  # the weights are still there (as `original`), θ once each
    for theta in thetas:
        assert sum(p is theta for p in params) == 1
    theta_keys = [k for k in model.state_dict() if k.startswith("soft_thresholds.theta.")]
    assert len(theta_keys) == expected
    assert all(parametrize.is_parametrized(m, "weight") for mods in layers.values() for _, m in mods)
    assert param_counts(model)["total"] == param_counts(_model())["total"]  # θ is not a model weight


def test_effective_weight_is_what_accounting_and_forward_see():
    model = _model()
    layers = prunable_weights(model)
    bank = install_soft_thresholds(model, layers, threshold_groups(list(layers), "per_component"), -20.0)
    assert sparsity_report(model)["overall"] == 0.0
    bank.set_theta("head/normal", 10.0)  # α ≈ 1 > every weight of that head
    report = sparsity_report(model)
    assert report["head/normal"] == 1.0 and report["backbone"] == 0.0
    out = model(torch.randn(2, 3, 32, 32))
    assert set(out) == set(TASKS)
    for comp, w, par in iter_parametrized(layers):
        if comp == "head/normal":
            assert par.group == "head/normal" and w.abs().max() < torch.sigmoid(torch.tensor(10.0))


def test_state_dict_round_trips_on_a_freshly_set_up_model():
    def setup():
        model = _model()
        layers = prunable_weights(model)
        install_soft_thresholds(model, layers, threshold_groups(list(layers), "per_component"), -20.0,
                                with_mask=True)
        return model

    a = setup()
    a.soft_thresholds.set_theta("backbone", -4.0)
    for _, _, par in iter_parametrized(prunable_weights(a)):
        par.mask[..., 0] = False
        break
    b = setup()
    b.load_state_dict(a.state_dict())  # strict: identical keys
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0, msg=k)
    x = torch.randn(1, 3, 32, 32)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x)["normal"], b(x)["normal"])
