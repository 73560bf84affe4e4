"""The fused soft threshold (one autograd node per threshold group) against the per-layer direct path.

Ŵ must be bit for bit the per-layer path's, ∂L/∂W value for value, ∂L/∂θ the same sum up to float32
summation order, the non-zero count exact; reused buffers must never overwrite what a live graph or a kept
gradient still holds.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import trainers.soft_threshold_fused as fused_mod
from trainers import soft_threshold_kernel
from trainers.adapmtl import threshold_groups
from trainers.models import build_model
from trainers.soft_threshold import NonzeroCounter, install_soft_thresholds, iter_parametrized
from trainers.soft_threshold_fused import count_kept
from trainers.sparsity import prunable_weights

TASKS = {"segment_semantic": 5, "normal": 3, "depth_zbuffer": 1}


def _model(fused: bool, *, theta: float = -3.0, mask: bool = False, channels_last: bool = False,
           thresholds: str = "per_component", seed: int = 0, kernel: bool | None = None):
    torch.manual_seed(seed)
    model = build_model("resnet34", TASKS, width=0.0625, head_channels=16, dropout=0.0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    layers = prunable_weights(model)
    bank = install_soft_thresholds(model, layers, threshold_groups(list(layers), thresholds), theta,
                                   with_mask=mask, fused=fused, cpu_kernel=kernel)
    bank.counter = NonzeroCounter()
    if mask:  # a fixed-mask-mode model with real masks (as after the bake)
        bank.masks_all_ones = False
        g = torch.Generator().manual_seed(seed + 1)
        for _, _, par in iter_parametrized(layers):
            par.mask.copy_(torch.rand(par.mask.shape, generator=g) > 0.3)
    return model, layers, bank


def _loss(out):
    return sum((v * torch.linspace(-1, 1, v.numel()).view_as(v)).sum() + v.square().mean() for v in out.values())


def _one_step(fused: bool, **kw):
    model, layers, bank = _model(fused, **kw)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    out = model(x)
    _loss(out).backward()
    return {
        "out": out,
        "w_grads": [w.grad.clone() for _, w, _ in iter_parametrized(layers)],
        "theta_grads": [t.grad.clone() if t.grad is not None else None for t in bank.parameters_list()],
        "kept": bank.counter.take(sum(1 for _ in iter_parametrized(layers))),
        "direct_kept": sum(int((m.weight != 0).sum()) for mods in layers.values() for _, m in mods),
        "bank": bank,
    }


def _theta_close(a, b):
    for ga, gb in zip(a, b, strict=True):
        assert (ga is None) == (gb is None)
        if ga is not None:
            torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("scalar_alpha", [True, False])
@pytest.mark.parametrize("kernel", [True, False], ids=["cpu-kernel", "stock-ops"])
def test_fused_step_matches_the_per_layer_path(mask, channels_last, scalar_alpha, kernel, monkeypatch):
    if kernel and not soft_threshold_kernel.available():
        pytest.skip("the fused CPU kernel cannot be built here (no C++ compiler or ninja)")
    monkeypatch.setattr(fused_mod, "CPU_SCALAR_ALPHA", scalar_alpha)  # False: the accelerator formula
    f = _one_step(True, mask=mask, channels_last=channels_last, kernel=kernel)
    assert f["bank"].cpu_kernel is kernel
    p = _one_step(False, mask=mask, channels_last=channels_last)
    for k in f["out"]:
        assert torch.equal(f["out"][k], p["out"][k]), k  # forward outputs bit for bit
    for a, b in zip(f["w_grads"], p["w_grads"], strict=True):
        assert a.shape == b.shape and torch.equal(a, b)
    _theta_close(f["theta_grads"], p["theta_grads"])
    assert any(g is not None and g.abs() > 0 for g in f["theta_grads"])  # the comparison is not vacuous
    # the count fed by the fused backward is exact (one contribution per layer, all layers once)
    assert f["kept"] is not None and int(f["kept"]) == f["direct_kept"] == int(p["kept"])
    assert 0 < f["direct_kept"] < sum(w.numel() for w in f["w_grads"])


def test_staged_weights_are_bitwise_the_per_layer_values():
    model, layers, bank = _model(True, theta=-2.5, mask=True)
    staged = bank.stage()
    assert len(staged) == sum(1 for _ in iter_parametrized(layers))
    for _, w, par in iter_parametrized(layers):
        src, version, w_hat = staged[par]
        assert src is w and version == w._version
        direct = par(w)  # outside a forward: the per-layer path
        assert w_hat.shape == w.shape and w_hat.stride() == direct.stride()
        assert torch.equal(w_hat.view(torch.int32), direct.view(torch.int32))  # bits, signs of zero included


@pytest.mark.parametrize("thresholds", ["shared", "backbone_and_heads"])
def test_shared_thresholds_fuse_across_components(thresholds):
    f = _one_step(True, thresholds=thresholds)
    p = _one_step(False, thresholds=thresholds)
    assert len(f["theta_grads"]) == {"shared": 1, "backbone_and_heads": 2}[thresholds]
    for a, b in zip(f["w_grads"], p["w_grads"], strict=True):
        assert torch.equal(a, b)
    _theta_close(f["theta_grads"], p["theta_grads"])


def test_fixed_mask_known_on_the_host_skips_the_threshold_and_theta():
    model, layers, bank = _model(True, mask=True)
    ref_model, ref_layers, ref_bank = _model(False, mask=True)
    for b in (bank, ref_bank):
        b.fixed.fill_(True)
        b.fixed_known = True
    x = torch.randn(2, 3, 32, 32)
    out, ref = model(x), ref_model(x)
    for k in out:
        assert torch.equal(out[k], ref[k])
    _loss(out).backward()
    _loss(ref).backward()
    for (_, w, _), (_, rw, _) in zip(iter_parametrized(layers), iter_parametrized(ref_layers), strict=True):
        assert torch.equal(w.grad, rw.grad)
    assert all(t.grad is None for t in bank.parameters_list())  # α = 0 exactly: no gradient to θ


def test_a_graph_kept_alive_is_never_overwritten_by_the_next_forward():
    """Two forwards with an in-place weight update between them, then both backwards: each graph must
    see its own Ŵ (a reused buffer would have been overwritten by the second forward)."""
    model, layers, _ = _model(True)
    ref_model, ref_layers, _ = _model(False)
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for m, lay in ((model, layers), (ref_model, ref_layers)):
        loss1 = _loss(m(x))
        with torch.no_grad():
            for _, w, _ in iter_parametrized(lay):
                w.mul_(0.5)
        loss2 = _loss(m(x))
        loss1.backward()
        first = [w.grad.clone() for _, w, _ in iter_parametrized(lay)]
        loss2.backward()  # accumulates into the kept first gradients
        grads.append((loss1.detach(), loss2.detach(), first, [w.grad.clone() for _, w, _ in iter_parametrized(lay)]))
    (a1, a2, af, aa), (b1, b2, bf, ba) = grads
    assert torch.equal(a1, b1) and torch.equal(a2, b2) and not torch.equal(a1, a2)
    for x_, y_ in zip(af + aa, bf + ba, strict=True):
        torch.testing.assert_close(x_, y_, rtol=1e-6, atol=0)


def test_buffers_are_reused_once_the_graph_and_gradients_are_gone():
    model, layers, bank = _model(True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 32, 32)
    seen = []
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        _loss(model(x)).backward()
        opt.step()
        seen.append({(g, k): buf.data_ptr() for g, pool in bank._pools.items() for k, (buf, _) in pool._bufs.items()})
    per_group = 2 if bank.cpu_kernel else 3  # Ŵ, ∂L/∂W (and sign(Ŵ), which the fused kernel never writes)
    assert len(seen[0]) == per_group * len(bank.groups) and seen[0] == seen[1] == seen[2]
    for _, w, par in iter_parametrized(layers):  # the gradients are views of the group's buffer (no copies)
        buf = bank._pools[par.group]._bufs["grad"][0]
        assert buf.data_ptr() <= w.grad.data_ptr() < buf.data_ptr() + buf.numel() * buf.element_size()


def test_reads_outside_the_forward_and_submodule_calls_take_the_per_layer_path():
    model, layers, bank = _model(True)
    model(torch.randn(1, 3, 32, 32))
    assert bank._staged is None  # dropped by the forward hook
    n_layers = sum(1 for _ in iter_parametrized(layers))
    bank.counter.take(n_layers)
    feats = model.backbone(torch.randn(1, 3, 32, 32))  # not the model's forward: no staging
    feats.sum().backward()
    assert bank.counter.take(36) is not None  # the 36 backbone layers counted one by one


def test_an_error_inside_the_forward_still_drops_the_staged_weights():
    from torch.nn.utils import parametrize

    model, _, bank = _model(True)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 5, 32, 32))  # wrong channel count
    assert bank._staged is None
    assert bank._cache_scope is None and not parametrize._cache_enabled and not parametrize._cache


def test_inside_the_forward_reads_are_served_from_the_parametrization_cache(monkeypatch):
    """Each layer's read of ``module.weight`` in the model's forward is the staged view itself, with no
    call of its SoftThreshold; afterwards the cache holds none of it, also inside a user's ``cached()``."""
    from torch.nn.utils import parametrize

    from trainers.soft_threshold import SoftThreshold

    model, layers, bank = _model(True)
    modules = [m for mods in layers.values() for _, m in mods]
    calls = [0]
    per_layer = SoftThreshold.forward

    def counting(self, w):
        calls[0] += 1
        return per_layer(self, w)

    monkeypatch.setattr(SoftThreshold, "forward", counting)
    seen = {}
    handles = [m.register_forward_pre_hook(lambda mod, _a: seen.__setitem__(mod, mod.weight)) for m in modules]
    model(torch.randn(1, 3, 32, 32))
    for h in handles:
        h.remove()
    assert calls[0] == 0 and len(seen) == len(modules)
    staged_once = bank.stage()
    for _, _, par in iter_parametrized(layers):
        assert torch.equal(seen[bank._owner[par]], staged_once[par][2])  # the staged Ŵ, no per-layer call
    assert not parametrize._cache and not parametrize._cache_enabled
    with parametrize.cached():
        model(torch.randn(1, 3, 32, 32))
        assert not parametrize._cache  # the bank's entries are gone, the user's scope is still open
        fresh = modules[0].weight  # evaluated now (per-layer path), then cached by the user's scope
        assert calls[0] == 1 and modules[0].weight is fresh
    assert not parametrize._cache_enabled


def test_a_deep_copy_stages_its_own_bank():
    model, _, bank = _model(True)
    clone = copy.deepcopy(model)
    bank.set_theta("head/normal", 5.0)  # prunes the original's normal head entirely
    x = torch.randn(1, 3, 32, 32)
    original, copied = model(x), clone(x)
    assert not torch.equal(original["normal"], copied["normal"])
    assert clone.soft_thresholds is not bank and clone.soft_thresholds._staged is None


def test_the_tensor_alpha_path_reads_nothing_on_the_host(monkeypatch):
    """The accelerator path (CPU_SCALAR_ALPHA off) stages and back-propagates without any host read."""
    monkeypatch.setattr(fused_mod, "CPU_SCALAR_ALPHA", False)
    model, layers, bank = _model(True, mask=True)
    names = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def boom(*args, **kwargs):
        raise AssertionError("host read in the fused path")

    staged = None
    try:
        for n in names:
            setattr(torch.Tensor, n, boom)
        staged = bank.stage()
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
    assert staged
    outs = [staged[par][2] for _, _, par in iter_parametrized(layers)]
    loss = sum((o * o).sum() for o in outs)
    try:
        for n in names:
            setattr(torch.Tensor, n, boom)
        loss.backward()
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
    assert all(t.grad is not None for t in bank.parameters_list())


def test_count_kept_is_exact_beyond_float32_integers():
    s = torch.ones(2**24 + 3)
    s[5] = 0.0
    s[-1] = -1.0
    assert int(count_kept(s)) == 2**24 + 2


def test_the_kernel_switch_or_an_unbuildable_kernel_leaves_the_stock_ops(monkeypatch):
    monkeypatch.setenv(soft_threshold_kernel.ENV_SWITCH, "0")
    assert not _model(True)[2].cpu_kernel
    monkeypatch.delenv(soft_threshold_kernel.ENV_SWITCH)
    monkeypatch.setattr(soft_threshold_kernel, "_tried", True)  # as after a failed build (no compiler)
    monkeypatch.setattr(soft_threshold_kernel, "_module", None)
    model, _, bank = _model(True)
    assert not bank.cpu_kernel
    model(torch.randn(1, 3, 32, 32))["normal"].sum().backward()  # and the step runs on the stock ops


@pytest.mark.skipif(not soft_threshold_kernel.available(), reason="the fused CPU kernel cannot be built here")
def test_the_kernel_matches_the_stock_ops_on_edge_values():
    """±0, values on the band's edge, NaN and ±inf weights; non-finite incoming gradients on pruned weights."""
    lam = 0.5
    w = torch.tensor([0.0, -0.0, 0.5, -0.5, 0.5000001, -0.75, 3.0, float("nan"), float("inf"), -float("inf"),
                      1e-30, 0.25] * 3)
    g = torch.tensor([1.0, float("nan"), float("inf"), 2.0, -3.0, 4.0, 0.5, 1.5, -2.0, 2.5, float("inf"), 7.0] * 3)
    ws = [w[:20], w[20:]]
    out = torch.empty_like(w)
    soft_threshold_kernel.threshold_into(ws, out, lam)
    ref = torch.cat([x - torch.clamp(x, -lam, lam) for x in ws])
    assert torch.equal(out.view(torch.int32), ref.view(torch.int32))  # bits, NaN and signs of zero included
    grad = torch.empty_like(w)
    dot, kept = soft_threshold_kernel.backward_into([g[:20], g[20:]], out, grad, [False, False])
    ref_grad = torch.ops.aten.softshrink_backward(g, out, 0.0)
    assert torch.equal(grad.nan_to_num(7.0).view(torch.int32), ref_grad.nan_to_num(7.0).view(torch.int32))
    s = torch.sign(out)
    assert kept == int(torch.dot(s, s)) == 15  # 0.5000001, -0.75, 3.0 and ±inf, 3 times; NaN is not counted
    assert dot == float(torch.dot(ref_grad, s)) or (math.isnan(dot) and math.isnan(float(torch.dot(ref_grad, s))))


@pytest.mark.skipif(not soft_threshold_kernel.available(), reason="the fused CPU kernel cannot be built here")
def test_the_kernel_refuses_gradients_it_cannot_index_and_writes_nothing():
    """A gradient not dense in its layer's memory order, of another dtype or size: None, nothing written (the
    fused backward then takes the stock ops)."""
    w_hat = torch.randn(2 * 4 * 3 * 3)
    grad = torch.full_like(w_hat, 7.0)
    g = torch.randn(4, 2, 3, 3)
    layouts = [False]
    for bad, cl in ((g.transpose(0, 1), layouts),                                 # not contiguous
                    (g, [True]),                                                  # not channels_last
                    (g.double(), layouts),                                        # float64
                    (g[:3], layouts)):                                            # wrong size
        assert soft_threshold_kernel.backward_into([bad], w_hat, grad, cl) is None
        assert torch.equal(grad, torch.full_like(w_hat, 7.0))
    assert soft_threshold_kernel.backward_into([g], w_hat, grad, layouts) is not None
    cl = g.contiguous(memory_format=torch.channels_last)
    assert soft_threshold_kernel.backward_into([cl], w_hat, grad, [True]) is not None


def test_a_layout_change_after_the_first_forward_is_seen():
    """The group layout is cached per step by the weights' storage; ``model.to(channels_last)`` after a
    forward re-derives it (the staged Ŵ keep the layers' new memory format and values)."""
    model, layers, bank = _model(True)
    ref_model, _, _ = _model(False)
    x = torch.randn(1, 3, 32, 32)
    model(x)
    for m in (model, ref_model):
        m.to(memory_format=torch.channels_last)
    staged = bank.stage()
    for _, w, par in iter_parametrized(layers):
        assert w.dim() != 4 or w.is_contiguous(memory_format=torch.channels_last)
        w_hat = staged[par][2]
        assert w_hat.is_contiguous(memory_format=torch.channels_last) or w_hat.dim() != 4
        assert torch.equal(w_hat, par(w))  # the per-layer path (outside a forward), element for element
    out, ref = model(x), ref_model(x)
    for k in out:
        assert torch.equal(out[k], ref[k])
