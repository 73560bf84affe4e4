"""SNIP: the mask is exactly the global top-k of |∂L/∂W ⊙ W| at initialization."""

from __future__ import annotations

import copy

import pytest
import torch
from test_baselines_kit import TinyMTL, batch_stream, make_ctx, mse_losses, zero_total

from trainers.masking import keep_count
from trainers.methods import build_method
from trainers.sparsity import prunable_weights


def _brute_force(model: torch.nn.Module, batches: int, k: int) -> list[torch.Tensor]:
    """Independent SNIP: plain model, summed gradients, stable sort, first k."""
    model = copy.deepcopy(model).eval()
    weights = [m.weight for layers in prunable_weights(model).values() for _, m in layers]
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


@pytest.mark.parametrize("batches", [1, 3])
def test_snip_mask_equals_brute_force_topk(batches: int) -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    total = sum(m.weight.numel() for layers in prunable_weights(model).values() for _, m in layers)
    expected = _brute_force(model, batches, keep_count(total, 0.8))
    method = build_method("snip", {"batches": batches})
    method.setup(make_ctx(model, 0.8))
    got = [m.reshape(-1) for m in method.masks.masks()]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert torch.equal(g, e)
    assert zero_total(model) == method.masks.total - method.target_keep


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
