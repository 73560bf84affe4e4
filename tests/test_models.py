"""Architecture facts of the paper models (METHODS_SPEC §6) and small-width behaviour."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainers.models import ARCHS, build_model
from trainers.models.summary import DATASET_TASKS, main, parameter_table

NYU = DATASET_TASKS["nyuv2"]
TASKONOMY = DATASET_TASKS["taskonomy"]


def meta_model(arch: str, tasks=NYU, **kw):
    with torch.device("meta"):
        return build_model(arch, tasks, **kw)


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def conv_weights(module: nn.Module) -> int:
    return sum(c.weight.numel() for c in convs(module))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_archs_registered():
    assert ARCHS == ("resnet34", "mobilenetv2")


@pytest.mark.parametrize(
    ("arch", "n_backbone", "backbone_w", "seg_head_w", "feat", "total_nyu", "total_taskonomy"),
    [
        ("resnet34", 36, 21_267_648, 23_232_512, 512, 90_653_888, 136_705_216),
        ("mobilenetv2", 52, 2_189_760, 51_544_064, 1280, 156_510_656, 259_185_088),
    ],
)
def test_full_width_counts(arch, n_backbone, backbone_w, seg_head_w, feat, total_nyu, total_taskonomy):
    model = meta_model(arch)
    assert model.feature_channels == feat
    assert len(convs(model.backbone)) == n_backbone
    assert conv_weights(model.backbone) == backbone_w
    for head in model.heads.values():
        assert len(convs(head)) == 12
    assert conv_weights(model.heads["segment_semantic"]) == seg_head_w
    assert conv_weights(model) == total_nyu
    assert conv_weights(meta_model(arch, TASKONOMY)) == total_taskonomy


def test_head_counts_match_formula():
    # 4 * (9*in*1024 + 1024^2 + 1024*C) weights, 4 * (2048 + C) biases (METHODS_SPEC §6.2)
    for arch, feat in (("resnet34", 512), ("mobilenetv2", 1280)):
        model = meta_model(arch, {"a": 17, "b": 3})
        for task, c in (("a", 17), ("b", 3)):
            head = model.heads[task]
            assert conv_weights(head) == 4 * (9 * feat * 1024 + 1024**2 + 1024 * c)
            assert sum(m.bias.numel() for m in convs(head)) == 4 * (2048 + c)
            assert not any(isinstance(m, nn.BatchNorm2d) for m in head.modules())


def test_backbone_bn_and_bias_counts():
    for arch, bn in (("resnet34", 17_024), ("mobilenetv2", 34_112)):
        backbone = meta_model(arch).backbone
        assert all(c.bias is None for c in convs(backbone))
        assert sum(p.numel() for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)
                   for p in m.parameters(recurse=False)) == bn


def test_every_conv_is_plain_conv2d():
    for arch in ARCHS:
        assert all(type(c) is nn.Conv2d for c in convs(meta_model(arch)))


def test_resnet34_structure():
    bb = meta_model("resnet34").backbone
    assert (bb.conv1.kernel_size, bb.conv1.stride, bb.conv1.padding) == ((7, 7), (2, 2), (3, 3))
    assert bb.maxpool.ceil_mode and bb.maxpool.kernel_size == 3 and bb.maxpool.stride == 2
    stages = [bb.layer1, bb.layer2, bb.layer3, bb.layer4]
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    assert [s[0].downsample is not None for s in stages] == [False, True, True, True]
    for stage, dilation, stride, ch in zip(stages, (1, 1, 2, 4), (1, 2, 1, 1), (64, 128, 256, 512)):
        assert stage[0].conv1.stride == (stride, stride)
        for block in stage:
            for conv in (block.conv1, block.conv2):
                assert conv.dilation == (dilation, dilation) and conv.padding == (dilation, dilation)
                assert conv.out_channels == ch
            assert all(b.downsample is None for b in stage[1:])


@pytest.mark.parametrize(
    ("arch", "size", "out"),
    [("resnet34", 321, 41), ("resnet34", 224, 29), ("mobilenetv2", 321, 11), ("mobilenetv2", 224, 7)],
)
def test_output_resolution_full_width(arch, size, out):
    model = meta_model(arch)
    preds = model(torch.zeros(2, 3, size, size, device="meta"))
    assert {t: tuple(p.shape) for t, p in preds.items()} == {t: (2, c, out, out) for t, c in NYU.items()}


# resnet34: 64 -> 32 -> 17 (ceil-mode pool) -> 9; mobilenetv2: 64 / 32 = 2
@pytest.mark.parametrize(("arch", "width", "out"), [("resnet34", 1 / 16, 9), ("mobilenetv2", 0.25, 2)])
def test_small_width_forward(arch, width, out):
    torch.manual_seed(0)
    model = build_model(arch, TASKONOMY, width=width)
    assert model.task_names == tuple(TASKONOMY)
    assert model.task_channels == TASKONOMY
    preds = model(torch.randn(2, 3, 64, 64))
    assert list(preds) == list(TASKONOMY)
    for task, c in TASKONOMY.items():
        assert preds[task].shape == (2, c, out, out)
        assert torch.isfinite(preds[task]).all()
    # same code path at every width: same number of convs as the paper model
    assert len(convs(model)) == len(convs(meta_model(arch, TASKONOMY)))


def test_width_scales_backbone_and_head():
    model = meta_model("resnet34", width=0.25)
    assert model.feature_channels == 128
    assert model.heads["normal"].branches[0].conv1.out_channels == 256
    assert meta_model("resnet34", width=0.25, head_channels=32).heads["normal"].branches[0].conv2.in_channels == 32
    assert meta_model("mobilenetv2", width=0.5).feature_channels == 640
    assert meta_model("mobilenetv2", width=1.5).feature_channels == 1920  # official rule above width 1


def test_aspp_branches():
    head = meta_model("resnet34").heads["normal"]
    assert [b.conv1.dilation[0] for b in head.branches] == [6, 12, 18, 24]
    assert [b.conv1.padding[0] for b in head.branches] == [6, 12, 18, 24]
    assert all(b.dropout.p == 0.5 for b in head.branches)


def test_aspp_output_is_sum_of_branches():
    torch.manual_seed(0)
    model = build_model("resnet34", {"t": 2}, width=1 / 32).eval()
    feats = torch.randn(1, model.feature_channels, 5, 5)
    head = model.heads["t"]
    torch.testing.assert_close(head(feats), sum(b(feats) for b in head.branches))


def test_init():
    torch.manual_seed(0)
    resnet = build_model("resnet34", {"t": 1}, width=0.25).backbone
    assert resnet.layer4[1].conv2.weight.std().item() == pytest.approx(0.01, rel=0.05)
    bns = [m for m in resnet.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((b.weight == 1).all() and (b.bias == 0).all()) for b in bns)
    mnet = build_model("mobilenetv2", {"t": 1}, width=1.0).backbone
    last = mnet.features[-1][0]  # 1x1, 320 -> 1280
    assert last.weight.std().item() == pytest.approx(math.sqrt(2 / 1280), rel=0.05)
    expand = mnet.features[5].conv[0][0]  # 1x1 pw expansion 32 -> 192
    assert expand.weight.std().item() == pytest.approx(math.sqrt(2 / 192), rel=0.05)


def test_build_model_validation():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("vgg", NYU)
    with pytest.raises(ValueError):
        build_model("resnet34", {})
    with pytest.raises(ValueError):
        build_model("resnet34", {"a.b": 1})
    with pytest.raises(ValueError):
        build_model("resnet34", NYU, width=0)


def test_parameter_table_and_cli(capsys):
    rows = parameter_table("resnet34", NYU)
    by = {r["component"]: r for r in rows}
    assert by["backbone"]["conv_weights"] == 21_267_648
    assert by["backbone"]["bn_params"] == 17_024
    assert by["heads"]["conv_weights"] == 69_386_240
    assert by["total"]["conv_weights"] == 90_653_888
    assert by["total"]["total"] == by["total"]["conv_weights"] + by["total"]["biases"] + by["total"]["bn_params"]
    assert main(["--arch", "mobilenetv2", "--dataset", "taskonomy"]) == 0
    out = capsys.readouterr().out
    assert "259,185,088" in out and "head/edge_texture" in out
