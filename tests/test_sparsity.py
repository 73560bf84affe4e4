"""Components, sparsity accounting, parameter and FLOP counts (DESIGN §3.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from trainers import sparsity as S
from trainers.models import MultiTaskModel, build_model

TASKS = {"segment_semantic": 5, "normal": 3, "depth_zbuffer": 1}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def model() -> MultiTaskModel:
    torch.manual_seed(0)
    return build_model("resnet34", TASKS, width=1 / 32)


class Mask(nn.Module):
    """Minimal mask parametrization, as a baseline would register it."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


class SoftThreshold(nn.Module):
    """AdapMTL-style effective weight sign(W)·relu(|W|-sigmoid(θ)) with one scalar θ."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(self.theta))


def toy_model(cin=3, cout=8, classes=2) -> MultiTaskModel:
    backbone = nn.Conv2d(cin, cout, 3, padding=1)
    backbone.out_channels = cout
    return MultiTaskModel("toy", backbone, {"t": nn.Conv2d(cout, classes, 1)}, cout)


def test_components_and_prunable(model):
    comps = S.components(model)
    assert list(comps) == ["backbone", "head/segment_semantic", "head/normal", "head/depth_zbuffer"]
    assert comps["backbone"] is model.backbone and comps["head/normal"] is model.heads["normal"]
    layers = S.prunable_weights(model)
    assert len(layers["backbone"]) == 36
    assert all(len(layers[f"head/{t}"]) == 12 for t in TASKS)
    named = dict(model.named_modules())
    for comp_layers in layers.values():
        for name, module in comp_layers:
            assert named[name] is module
    # wrappers are looked through
    assert list(S.components(nn.DataParallel(model))) == list(comps)


def test_numel_per_component(model):
    numel = S.numel_per_component(model)
    for comp, module in S.components(model).items():
        assert numel[comp] == sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def test_report_equals_hand_count(model):
    assert S.sparsity_report(model)["overall"] == 0.0
    with torch.no_grad():
        model.backbone.layer3[0].conv1.weight.view(-1)[:50] = 0
        model.backbone.conv1.weight.view(-1)[:7] = 0
        model.heads["normal"].branches[2].conv2.weight.view(-1)[:300] = 0
    numel = S.numel_per_component(model)
    hand = {"backbone": 57, "head/segment_semantic": 0, "head/normal": 300, "head/depth_zbuffer": 0}
    report = S.sparsity_report(model)
    for comp, zeros in hand.items():
        assert report[comp] == pytest.approx(zeros / numel[comp])
    overall = sum(hand.values()) / sum(numel.values())
    assert report["overall"] == pytest.approx(overall)
    mean_of_ratios = sum(report[c] for c in hand) / len(hand)
    assert report["overall"] != pytest.approx(mean_of_ratios)  # count-weighted, not a mean
    counts = S.zero_counts(model)
    assert {c: int(v) for c, v in counts.items()} == hand


def test_zero_counts_stay_on_device(model):
    counts = S.zero_counts(model)
    for value in counts.values():
        assert isinstance(value, torch.Tensor) and value.dim() == 0
        assert value.device == next(model.parameters()).device and value.dtype == torch.int64
    # a meta-device model has no values to read: any host sync would raise, so this proves there is none
    with torch.device("meta"):
        meta = build_model("resnet34", TASKS, width=1 / 32)
    assert all(v.device.type == "meta" for v in S.zero_counts(meta).values())


def test_report_does_not_call_item(model, monkeypatch):
    def boom(self):
        raise AssertionError("sparsity_report must not call .item()")

    monkeypatch.setattr(torch.Tensor, "item", boom)
    assert set(S.sparsity_report(model)) == {*S.components(model), "overall"}


def test_report_follows_parametrization(model):
    conv = model.heads["depth_zbuffer"].branches[0].conv1
    mask = torch.ones_like(conv.weight)
    mask.view(-1)[::4] = 0
    parametrize.register_parametrization(conv, "weight", Mask(mask))
    expected = int((mask == 0).sum())
    assert int(S.zero_counts(model)["head/depth_zbuffer"]) == expected
    assert S.sparsity_report(model)["head/depth_zbuffer"] == pytest.approx(
        expected / S.numel_per_component(model)["head/depth_zbuffer"]
    )
    # the layer is still found, once, under its model name
    names = [n for n, _ in S.prunable_weights(model)["head/depth_zbuffer"]]
    assert names.count("heads.depth_zbuffer.branches.0.conv1") == 1 and len(names) == 12


def test_param_counts(model):
    dense_total = sum(p.numel() for p in model.parameters())
    counts = S.param_counts(model)
    assert counts["total"] == counts["nonzero"] == dense_total
    assert counts["prunable"] == sum(S.numel_per_component(model).values())
    # a soft threshold shared by the backbone convs: θ is method state, not a model weight
    shared = SoftThreshold(theta=-30.0)
    for _, conv in S.prunable_weights(model)["backbone"]:
        parametrize.register_parametrization(conv, "weight", shared)
    with torch.no_grad():
        model.backbone.conv1.parametrizations.weight.original.view(-1)[:10] = 0
    counts = S.param_counts(model)
    assert counts["total"] == dense_total
    assert counts["nonzero"] == dense_total - 10
    assert counts["prunable_nonzero"] == counts["prunable"] - 10


def test_flops_single_conv_analytic():
    model = toy_model(cin=3, cout=8, classes=2)
    h = w = 16
    backbone_flops = 2 * 3 * 8 * 9 * h * w
    head_flops = 2 * 8 * 2 * 1 * h * w
    dense, sparse = S.flops(model, (1, 3, h, w))
    assert dense == backbone_flops + head_flops
    assert sparse == dense
    with torch.no_grad():
        model.backbone.weight.view(-1)[: model.backbone.weight.numel() // 4] = 0  # density 0.75
    dense2, sparse2 = S.flops(model, (1, 3, h, w))
    assert dense2 == dense
    assert sparse2 == round(0.75 * backbone_flops + head_flops)


def test_flops_with_parametrization_and_mode_restored():
    model = toy_model(cin=4, cout=6, classes=3).train()
    h = w = 8
    mask = torch.zeros_like(model.heads["t"].weight)
    mask[0] = 1  # keep one of three output channels: density 1/3
    parametrize.register_parametrization(model.heads["t"], "weight", Mask(mask))
    dense, sparse = S.flops(model, (2, 4, h, w))
    backbone_flops = 2 * 2 * 4 * 6 * 9 * h * w
    head_flops = 2 * 2 * 6 * 3 * h * w
    assert dense == backbone_flops + head_flops
    assert sparse == round(backbone_flops + head_flops / 3)
    assert model.training


def test_flops_real_model_and_meta(model):
    dense, sparse = S.flops(model, (1, 3, 32, 32))
    assert dense > 0 and sparse == dense
    with torch.no_grad():
        for _, conv in S.prunable_weights(model)["head/segment_semantic"]:
            conv.weight.zero_()
    _, sparse = S.flops(model, (1, 3, 32, 32))
    assert sparse < dense
    with torch.device("meta"):
        meta = build_model("resnet34", TASKS, width=1 / 32)
    assert S.flops(meta, (1, 3, 32, 32)) == (dense, dense)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_zero_counts_no_cuda_sync():
    model = build_model("resnet34", TASKS, width=1 / 32).cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        counts = S.zero_counts(model)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(v.is_cuda for v in counts.values())
    assert S.sparsity_report(model)["overall"] == 0.0
