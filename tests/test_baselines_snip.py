"""SNIP: the mask is exactly the global top-k of |∂L/∂W ⊙ W| at initialization."""

from __future__ import annotations

import copy

import pytest
import torch
from test_baselines_kit import TinyMTL, batch_stream, make_ctx, mse_losses, zero_total

from trainers.masking import keep_count
from trainers.methods import build_method
from trainers.sparsity import prunable_weights


def _tensors(model: torch.nn.Module, biases: bool) -> list[torch.Tensor]:
    """The ranked tensors: every conv weight, then (official SNIP) every conv bias, in layer order."""
    modules = [m for layers in prunable_weights(model).values() for _, m in layers]
    return [m.weight for m in modules] + ([m.bias for m in modules if m.bias is not None] if biases else [])


def _brute_force(model: torch.nn.Module, batches: int, k: int, biases: bool = True) -> list[torch.Tensor]:
    """Independent SNIP: plain model, summed gradients, stable sort, first k."""
    model = copy.deepcopy(model).eval()
    weights = _tensors(model, biases)
    grads = [torch.zeros_like(w) for w in weights]
    nxt = batch_stream(1)  # the context's setup stream
    for _ in range(batches):
        b = nxt()
        loss = sum(mse_losses(model(b["image"]), b).values())
        for acc, g in zip(grads, torch.autograd.grad(loss, weights)):
            acc += g
    scores = torch.cat([(g * w).abs().reshape(-1) for g, w in zip(grads, weights)])
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[torch.sort(scores, descending=True, stable=True).indices[:k]] = True
    return list(keep.split([w.numel() for w in weights]))


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("batches", [1, 3])
def test_snip_mask_equals_brute_force_topk(batches: int, biases: bool) -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    total = sum(t.numel() for t in _tensors(model, biases))
    expected = _brute_force(model, batches, keep_count(total, 0.8), biases)
    method = build_method("snip", {"batches": batches, "include_biases": biases})
    method.setup(make_ctx(model, 0.8))
    got = [m.reshape(-1) for m in method.masks.masks()] + [m.mask.reshape(-1) for _, m in method.bias_masks]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert torch.equal(g, e)
    kept_weights = sum(int(e.sum()) for e in expected[: len(method.masks.layers)])
    assert zero_total(model) == method.masks.total - kept_weights
    if biases:  # official SNIP: some biases lose out in the ranking; masked biases are zero in the forward
        bias_masks = [m.mask for _, m in method.bias_masks]
        assert any(not bool(m.all()) for m in bias_masks)
        for module, mask in method.bias_masks:
            assert torch.all(module.bias[~mask.mask] == 0)
    else:
        assert zero_total(model) == method.masks.total - method.target_keep


def test_snip_biases_stay_zero_through_training() -> None:
    from test_baselines_kit import run_loop

    torch.manual_seed(0)
    model = TinyMTL()
    method = build_method("snip")
    ctx = make_ctx(model, 0.9, weight_decay=0.1)
    method.setup(ctx)
    run_loop(method, ctx, steps=5)
    for module, mask in method.bias_masks:
        assert torch.all(module.parametrizations.bias.original[~mask.mask] == 0)
        assert torch.all(module.bias[~mask.mask] == 0)
    assert ctx.compute.scoring_forward_images == 4 and ctx.compute.scoring_backward_images == 4


def test_snip_resume_skips_scoring_and_keeps_the_mask() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    method = build_method("snip")
    method.setup(make_ctx(model, 0.9))
    state = model.state_dict()
    fresh = TinyMTL()
    calls = []
    ctx = make_ctx(fresh, 0.9, resuming=True)
    ctx.next_batch = lambda: calls.append(1)  # must not be called on resume
    resumed = build_method("snip")
    resumed.setup(ctx)
    fresh.load_state_dict(state)
    assert not calls
    assert all(torch.equal(a, b) for a, b in zip(resumed.masks.masks(), method.masks.masks()))


def test_snip_params_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="invalid parameters"):
        build_method("snip", {"batch": 2})
