"""The shared mask machinery: exact top-k, the parametrization, zeros under Adam + weight decay, state."""

from __future__ import annotations

import math

import pytest
import torch
from test_baselines_kit import TinyMTL, batch_stream, mse_losses, prunable_total, zero_total

from baselines.erk import erk_densities
from trainers.masking import (
    MaskSet,
    apportion,
    global_topk_masks,
    keep_count,
    magnitude_scores,
    preserved_buffers,
    remove_masks,
    split_batch,
    topk_mask,
)
from trainers.sparsity import sparsity_report


def _brute_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order[:k]] = True
    return keep


@pytest.mark.parametrize("k", [0, 1, 5, 17, 40])
def test_topk_mask_exact_count_and_ties_to_lower_index(k: int) -> None:
    scores = torch.tensor([3.0, 1.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0] * 5)
    keep = topk_mask(scores, k)
    assert int(keep.sum()) == k
    assert torch.equal(keep, _brute_topk(scores, k))


def test_topk_mask_random_and_nan() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 7, (1000,), generator=g).float()
    s[::97] = float("nan")
    for k in (0, 3, 500, 999, 1000):
        keep = topk_mask(s, k)
        assert int(keep.sum()) == k
        assert torch.equal(keep, _brute_topk(torch.nan_to_num(s, nan=-math.inf), k))


def test_global_topk_spans_tensors() -> None:
    a, b = torch.tensor([[0.5, 0.1], [0.9, 0.2]]), torch.tensor([0.3, 0.95, 0.1])
    ma, mb = global_topk_masks([a, b], 3)
    assert ma.tolist() == [[True, False], [True, False]] and mb.tolist() == [False, True, False]


def test_keep_count_and_apportion() -> None:
    assert keep_count(1000, 0.9) == 100 and keep_count(7, 0.5) == 3
    counts = apportion([2.5, 2.5, 0.3, 10.0], 14, [5, 5, 1, 10])
    assert sum(counts) == 14 and all(c <= cap for c, cap in zip(counts, [5, 5, 1, 10]))
    assert apportion([0.0, 0.0], 0, [1, 1]) == [0, 0]


def test_erk_densities_average_to_target() -> None:
    shapes = [(16, 3, 7, 7), (16, 16, 3, 3), (32, 16, 3, 3), (64, 32, 1, 1), (3, 64, 1, 1)]
    for density in (0.1, 0.3, 0.5):
        d = erk_densities(shapes, density)
        n = [math.prod(s) for s in shapes]
        assert sum(x * m for x, m in zip(d, n)) == pytest.approx(density * sum(n))
        assert all(0 < x <= 1 for x in d)
        assert d[-1] == 1.0  # the small classifier conv turns dense, as in the official ERK loop


def test_install_parametrizes_every_prunable_weight() -> None:
    model = TinyMTL()
    masks = MaskSet.install(model)
    assert masks.total == prunable_total(model)
    assert MaskSet.install(model).names == masks.names  # idempotent
    keys = model.state_dict().keys()
    assert sum(k.endswith("parametrizations.weight.0.mask") for k in keys) == len(masks.layers)
    layer = masks.layers[0]
    layer.mask.view(-1)[:5] = False
    assert torch.equal(layer.module.weight, layer.original * layer.mask)
    assert int((layer.module.weight == 0).sum()) >= 5


def test_pruned_weights_stay_exactly_zero_under_adam_with_weight_decay() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    masks = MaskSet.install(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.1)
    nxt = batch_stream(3)
    # a few dense steps first so Adam carries non-zero moments into the pruned positions
    for step in range(8):
        b = nxt()
        loss = sum(mse_losses(model(b["image"]), b).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        masks.enforce_()
        if step == 3:
            k = keep_count(masks.total, 0.7)
            masks.set_masks(global_topk_masks(magnitude_scores(masks), k))
    assert zero_total(model) == masks.total - keep_count(masks.total, 0.7)
    for layer in masks.layers:
        assert torch.all(layer.original[~layer.mask] == 0)
        assert torch.all(layer.module.weight[~layer.mask] == 0)
    assert sparsity_report(model)["overall"] == pytest.approx(1 - keep_count(masks.total, 0.7) / masks.total)


def test_mask_state_roundtrip_and_remove() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    masks = MaskSet.install(model)
    masks.set_masks(global_topk_masks(magnitude_scores(masks), 100))
    state = masks.state_dict()
    other = TinyMTL()
    other_masks = MaskSet.install(other)
    other.load_state_dict(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other_masks.masks(), masks.masks()))
    other_masks.fill_(True)
    other_masks.load_state_dict(state)
    assert int(other_masks.kept()) == 100
    remove_masks(model)
    assert "backbone.0.weight" in model.state_dict() and zero_total(model) == masks.total - 100


def test_preserved_buffers_restore_bn_stats() -> None:
    model = TinyMTL()
    MaskSet.install(model)
    before = model.backbone[1].running_mean.clone()
    with preserved_buffers(model):
        model.train()
        model(torch.randn(4, 3, 8, 8) + 3)
        assert not torch.equal(model.backbone[1].running_mean, before)
    assert torch.equal(model.backbone[1].running_mean, before)


def test_split_batch() -> None:
    parts = split_batch({"image": torch.arange(5), "a": torch.arange(5)}, 2)
    assert [p["image"].tolist() for p in parts] == [[0, 1], [2, 3, 4]]


def test_cpu_mask_multiplier_follows_every_mask_change():
    """The cached 0/1 multiplier of the CPU path is rebuilt after in-place updates and buffer swaps."""
    from trainers.masking import WeightMask

    wm = WeightMask((4, 3))
    w = torch.randn(4, 3)
    assert torch.equal(wm(w), w)
    wm.mask[0, 0] = False  # in place: version counter moves
    assert wm(w)[0, 0] == 0 and torch.equal(wm(w)[1:], w[1:])
    wm.load_state_dict({"mask": torch.zeros(4, 3, dtype=torch.bool)})
    assert torch.count_nonzero(wm(w)) == 0
    wm.mask = torch.ones(4, 3, dtype=torch.bool)  # a new buffer tensor (version 0 again)
    assert torch.equal(wm(w), w)
    assert wm(w.double()).dtype == torch.float64
