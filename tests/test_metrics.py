"""Meters against hand-computed numbers on tiny tensors (expected values written out, not recomputed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers.metrics import PERCENT_METRICS, resize_to
from trainers.tasks import get_task

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def onehot_logits(classes: list[list[list[int]]], c: int) -> torch.Tensor:
    """[B, C, H, W] logits whose argmax is ``classes``."""
    idx = torch.tensor(classes)
    return torch.nn.functional.one_hot(idx, c).permute(0, 3, 1, 2).float()


def unit_at(deg: float, scale: float = 1.0) -> list[float]:
    r = math.radians(deg)
    return [scale * math.cos(r), scale * math.sin(r), 0.0]


def normals(vecs: list[list[list[float]]]) -> torch.Tensor:
    """[1, 3, H, W] from an H×W grid of 3-vectors."""
    return torch.tensor(vecs).permute(2, 0, 1).unsqueeze(0)


# ------------------------------------------------------------------------------------------ segmentation
SEG_GT = [[[0, 0, 1], [1, 2, 255]]]
SEG_PRED = [[[0, 1, 1], [0, 0, 3]]]  # pixel under 255 is ignored whatever it predicts
# pairs (gt, pred): (0,0) (0,1) (1,1) (1,0) (2,0)  -> conf rows: [1,1,0,0] [1,1,0,0] [1,0,0,0] [0,0,0,0]
# IoU0 = 1/(2+3-1) = 1/4, IoU1 = 1/(2+2-1) = 1/3, class 2 has TP 0, class 3 never occurs.


@pytest.mark.parametrize(
    ("absent", "expected"),
    [
        ("ignore", (0.25 + 1 / 3) / 2 * 100),  # official: class 2 (TP = 0) dropped -> 29.1667
        ("present", (0.25 + 1 / 3 + 0) / 3 * 100),  # class 2 in gt counts 0 -> 19.4444
        ("zero", (0.25 + 1 / 3 + 0 + 0) / 4 * 100),  # all 4 classes -> 14.5833
    ],
)
def test_miou_absent_classes(absent: str, expected: float) -> None:
    meter = get_task("segment_semantic", "nyuv2", miou_absent=absent).new_meter()
    meter.update(onehot_logits(SEG_PRED, 4), {"segment_semantic": torch.tensor(SEG_GT)})
    out = meter.compute()
    assert out["miou"] == pytest.approx(expected, abs=1e-9)
    assert out["pixel_acc"] == pytest.approx(40.0)  # 2 of 5 valid pixels


def test_miou_accumulates_one_confusion_matrix_across_batches() -> None:
    meter = get_task("segment_semantic", "nyuv2").new_meter()
    gt = torch.tensor(SEG_GT)
    logits = onehot_logits(SEG_PRED, 4)
    meter.update(logits[:, :, :1], {"segment_semantic": gt[:, :1]})  # row 0: (0,0) (0,1) (1,1)
    meter.update(logits[:, :, 1:], {"segment_semantic": gt[:, 1:]})  # row 1: (1,0) (2,0) ignore
    assert meter.compute()["miou"] == pytest.approx((0.25 + 1 / 3) / 2 * 100)


def test_pixel_acc_ignore_and_batch_weighting() -> None:
    # batch 1 (B=1): 5 valid pixels, 2 correct -> 0.4
    # batch 2 (B=2): 12 valid pixels, 9 correct -> 0.75
    gt2 = torch.zeros(2, 2, 3, dtype=torch.long)
    pred2 = [[[0, 0, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0]]]
    batches = [(onehot_logits(SEG_PRED, 4), torch.tensor(SEG_GT)), (onehot_logits(pred2, 4), gt2)]

    official = get_task("segment_semantic", "nyuv2").new_meter()
    pooled = get_task("segment_semantic", "nyuv2", average="pooled").new_meter()
    for logits, gt in batches:
        official.update(logits, {"segment_semantic": gt})
        pooled.update(logits, {"segment_semantic": gt})
    assert official.compute()["pixel_acc"] == pytest.approx((0.4 * 1 + 0.75 * 2) / 3 * 100)  # 63.333
    assert pooled.compute()["pixel_acc"] == pytest.approx(11 / 17 * 100)  # 64.706


def test_seg_meter_resizes_prediction_to_label_nearest() -> None:
    logits = onehot_logits([[[0, 1], [2, 3]]], 4)  # 2x2 -> each covers a 2x2 block of the 4x4 label
    gt = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]])
    meter = get_task("segment_semantic", "nyuv2").new_meter()
    meter.update(logits, {"segment_semantic": gt})
    assert meter.compute()["pixel_acc"] == pytest.approx(15 / 16 * 100)


def test_seg_meter_rejects_wrong_class_count() -> None:
    meter = get_task("segment_semantic", "nyuv2", num_classes=40).new_meter()
    with pytest.raises(ValueError, match="40"):
        meter.update(onehot_logits(SEG_PRED, 4), {"segment_semantic": torch.tensor(SEG_GT)})


# ------------------------------------------------------------------------------------------ normals
def test_normal_angles_with_mask() -> None:
    angles = [[0, 10, 20, 25], [45, 90, 60, 170]]
    pred = normals([[unit_at(a, scale=5.0) for a in row] for row in angles])  # magnitudes differ
    gt = normals([[[2.0, 0.0, 0.0]] * 4] * 2)
    mask = torch.ones(1, 1, 2, 4, dtype=torch.bool)
    mask[0, 0, 1, 3] = False  # drop the 170° pixel
    meter = get_task("normal", "nyuv2").new_meter()
    meter.update(pred, {"normal": gt, "normal_mask": mask})
    out = meter.compute()
    # valid angles sorted: 0 10 20 25 45 60 90 (N = 7)
    assert out["angle_mean"] == pytest.approx(250 / 7, abs=1e-3)  # 35.714
    assert out["angle_median"] == pytest.approx(25.0, abs=0.01)
    assert out["within_11.25"] == pytest.approx(2 / 7 * 100)  # 0, 10
    assert out["within_22.5"] == pytest.approx(3 / 7 * 100)  # 0, 10, 20
    assert out["within_30"] == pytest.approx(4 / 7 * 100)  # 0, 10, 20, 25

    # an even count takes the mean of the two middle angles, like np.median: 25 and 35 -> 30
    meter.update(normals([[unit_at(35)]]), {"normal": normals([[[1.0, 0.0, 0.0]]])})
    assert meter.compute()["angle_median"] == pytest.approx(30.0, abs=0.01)


def test_normal_meter_accepts_raw_nyu_encoding_with_raw_validity() -> None:
    # raw PNG encoding: (255,255,255) = invalid; the target is normalised as is (official)
    gt = normals([[[200.0, 0.0, 0.0], [255.0, 255.0, 255.0]]])
    pred = normals([[unit_at(0), unit_at(90)]])
    meter = get_task("normal", "nyuv2", raw_validity=True).new_meter()
    meter.update(pred, {"normal": gt})
    out = meter.compute()
    assert out["angle_mean"] == pytest.approx(0.0, abs=1e-3)
    assert out["within_11.25"] == pytest.approx(100.0)


@pytest.mark.parametrize("bin_deg", [0.01, 1.0])
def test_median_histogram_error_bound(bin_deg: float) -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 3, 9, 11, generator=g)
    gt = torch.randn(3, 3, 9, 11, generator=g)
    meter = get_task("normal", "nyuv2", angle_bin_deg=bin_deg).new_meter()
    meter.update(pred, {"normal": gt})
    cos = torch.nn.functional.cosine_similarity(pred, gt, dim=1).clamp(-1, 1)
    ref = float(np.median(np.degrees(np.arccos(cos.numpy().ravel()))))
    assert abs(meter.compute()["angle_median"] - ref) <= bin_deg / 2 + 1e-4


# ------------------------------------------------------------------------------------------ depth
DEPTH_G = [[1.0, 2.0, 4.0], [1.0, 2.0, 1.0]]
DEPTH_P = [[1.25, 1.2, 5.0], [-1.0, 2.0, 3.0]]
# valid pixels (last one masked): |e| = .25 .8 1 2 0 ; rel = .25 .4 .25 2 0 ;
# ratio = 1.25, 1.667, 1.25, (p<0), 1.0


def depth_batch() -> dict[str, torch.Tensor]:
    mask = torch.ones(1, 1, 2, 3, dtype=torch.bool)
    mask[0, 0, 1, 2] = False
    return {"depth_zbuffer": torch.tensor([[DEPTH_G]]), "depth_zbuffer_mask": mask}


def test_depth_metrics_by_hand() -> None:
    meter = get_task("depth_zbuffer", "nyuv2").new_meter()
    meter.update(torch.tensor([[DEPTH_P]]), depth_batch())
    out = meter.compute()
    assert out["abs_err"] == pytest.approx(4.05 / 5)  # 0.81
    assert out["rel_err"] == pytest.approx(2.9 / 5)  # 0.58
    assert out["delta_1"] == pytest.approx(60.0)  # 1.25 (≤), 1.25 (≤), 1.0 ; p = -1 outside
    assert out["delta_2"] == pytest.approx(60.0)  # 1.667 > 1.5625
    assert out["delta_3"] == pytest.approx(80.0)  # 1.667 ≤ 1.953


def test_depth_delta_strict_and_official_sign() -> None:
    strict = get_task("depth_zbuffer", "nyuv2", inclusive=False).new_meter()
    strict.update(torch.tensor([[DEPTH_P]]), depth_batch())
    out = strict.compute()
    assert (out["delta_1"], out["delta_2"], out["delta_3"]) == pytest.approx((20.0, 60.0, 80.0))

    official = get_task("depth_zbuffer", "nyuv2", delta_nonpositive="official").new_meter()
    official.update(torch.tensor([[DEPTH_P]]), depth_batch())
    out = official.compute()  # the p = -1 pixel has ratio -1 and counts as within everywhere
    assert (out["delta_1"], out["delta_2"], out["delta_3"]) == pytest.approx((80.0, 80.0, 100.0))


def test_depth_batch_weighting() -> None:
    meter = get_task("depth_zbuffer", "nyuv2").new_meter()
    meter.update(torch.tensor([[DEPTH_P]]), depth_batch())  # B = 1: abs .81, rel .58
    meter.update(torch.full((3, 1, 2, 2), 2.0), {"depth_zbuffer": torch.ones(3, 1, 2, 2)})  # B = 3: 1, 1
    out = meter.compute()
    assert out["abs_err"] == pytest.approx((0.81 + 3 * 1.0) / 4)  # 0.9525
    assert out["rel_err"] == pytest.approx((0.58 + 3 * 1.0) / 4)  # 0.895
    assert out["delta_1"] == pytest.approx(3 / 17 * 100)  # pooled: 3 of 5 + 0 of 12


def test_depth_meter_resizes_prediction_to_label() -> None:
    meter = get_task("depth_zbuffer", "nyuv2").new_meter()
    meter.update(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), {"depth_zbuffer": torch.ones(1, 1, 4, 4)})
    assert meter.compute()["abs_err"] == pytest.approx(1.5)  # 4 pixels each of errors 0, 1, 2, 3


def test_empty_batch_is_skipped_not_nan() -> None:
    meter = get_task("depth_zbuffer", "nyuv2").new_meter()
    meter.update(torch.tensor([[DEPTH_P]]), depth_batch())
    empty = {"depth_zbuffer": torch.ones(4, 1, 2, 3), "depth_zbuffer_mask": torch.zeros(4, 1, 2, 3, dtype=torch.bool)}
    meter.update(torch.zeros(4, 1, 2, 3), empty)
    assert meter.compute()["abs_err"] == pytest.approx(0.81)


# ------------------------------------------------------------------------------------------ taskonomy
def test_taskonomy_seg_err_weighted_ce_batch_weighted() -> None:
    task = get_task("segment_semantic", "taskonomy", class_weights=[1.0, 3.0])
    meter = task.new_meter()
    logits = torch.tensor([[[[0.0, LN3, 0.0]], [[0.0, 0.0, 0.0]]]])  # [1, 2, 1, 3]
    gt = torch.tensor([[[0, 1, 255]]])
    meter.update(logits, {"segment_semantic": gt})
    # pixel 1: p = 1/2, nll ln2, w 1 ; pixel 2: p(1) = 1/4, nll ln4, w 3 -> (ln2 + 3 ln4) / 4 = 7 ln2 / 4
    assert meter.compute()["err"] == pytest.approx(7 * LN2 / 4)
    meter.update(torch.zeros(2, 2, 1, 2), {"segment_semantic": torch.ones(2, 1, 2, dtype=torch.long)})
    assert meter.compute()["err"] == pytest.approx((7 * LN2 / 4 + 2 * LN2) / 3)  # 0.866434


def test_taskonomy_cosine_similarity() -> None:
    pred = normals([[unit_at(0, 3.0), unit_at(90), unit_at(60), unit_at(180), unit_at(10)]])
    gt = normals([[[1.0, 0.0, 0.0]] * 5])
    mask = torch.tensor([[[[True, True, True, True, False]]]])
    meter = get_task("normal", "taskonomy").new_meter()
    meter.update(pred, {"normal": gt, "normal_mask": mask})
    assert meter.compute()["cosine_similarity"] == pytest.approx((1 + 0 + 0.5 - 1) / 4, abs=1e-6)  # 0.125


@pytest.mark.parametrize("task", ["depth_zbuffer", "keypoints2d", "edge_texture"])
def test_taskonomy_abs_err_masked_and_batch_weighted(task: str) -> None:
    meter = get_task(task, "taskonomy").new_meter()
    mask = torch.tensor([[[[True, True], [True, False]]]])
    meter.update(torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]]), {task: torch.zeros(1, 1, 2, 2), f"{task}_mask": mask})
    meter.update(torch.full((2, 1, 2, 2), 0.5), {task: torch.zeros(2, 1, 2, 2)})
    assert meter.compute() == {"abs_err": pytest.approx((0.2 + 2 * 0.5) / 3)}  # 0.4


def test_synthetic_scenes_has_nyu_style_and_l1_tasks() -> None:
    assert set(get_task("keypoints2d", "synthetic_scenes").metric_directions) == {"abs_err"}
    assert set(get_task("normal", "synthetic_scenes").metric_directions) == {
        "angle_mean", "angle_median", "within_11.25", "within_22.5", "within_30"}


# ------------------------------------------------------------------------------------------ API
def test_meter_reset_and_empty_compute() -> None:
    meter = get_task("edge_texture", "taskonomy").new_meter()
    with pytest.raises(RuntimeError):
        meter.compute()
    meter.update(torch.ones(1, 1, 2, 2), {"edge_texture": torch.zeros(1, 1, 2, 2)})
    meter.reset()
    meter.update(torch.full((1, 1, 2, 2), 0.25), {"edge_texture": torch.zeros(1, 1, 2, 2)})
    assert meter.compute()["abs_err"] == pytest.approx(0.25)


def test_percent_metrics() -> None:
    assert {"miou", "pixel_acc", "within_30", "delta_1"} <= PERCENT_METRICS
    assert not {"abs_err", "angle_mean", "cosine_similarity", "err"} & PERCENT_METRICS


def test_resize_to_nearest_keeps_dtype() -> None:
    lab = torch.arange(16).view(1, 1, 4, 4)
    out = resize_to(lab, (2, 2))
    assert out.dtype == torch.long and out.flatten().tolist() == [0, 2, 8, 10]
    up = resize_to(torch.tensor([[[[True, False]]]]), (1, 4))
    assert up.dtype == torch.bool and up.flatten().tolist() == [True, True, False, False]


# ------------------------------------------------------------------------------------------ official cross-check
def test_random_batches_match_an_official_style_numpy_reference() -> None:
    """Independent numpy path (boolean indexing, np.median, per-batch lists) on random data."""
    g = torch.Generator().manual_seed(1)
    seg, sn, dep = (get_task(t, "nyuv2").new_meter() for t in ("segment_semantic", "normal", "depth_zbuffer"))
    conf = np.zeros((5, 5))
    accs, sizes, angles, abs_b, ratios = [], [], [], [], []
    for b in (2, 3):
        logits = torch.randn(b, 5, 3, 3, generator=g)
        lab = torch.randint(0, 6, (b, 6, 6), generator=g)
        lab[lab == 5] = 255
        seg.update(logits, {"segment_semantic": lab})
        p = logits.repeat_interleave(2, 2).repeat_interleave(2, 3).argmax(1).numpy().ravel()
        t = lab.numpy().ravel()
        keep = t < 5
        np.add.at(conf, (t[keep], p[keep]), 1)
        accs.append((p[keep] == t[keep]).mean())
        sizes.append(b)

        pn, gn = torch.randn(b, 3, 6, 6, generator=g), torch.randn(b, 3, 6, 6, generator=g)
        m = torch.rand(b, 1, 6, 6, generator=g) > 0.3
        sn.update(pn, {"normal": gn, "normal_mask": m})
        c = torch.nn.functional.cosine_similarity(pn, gn, dim=1).numpy()[m[:, 0].numpy()]
        angles.append(np.degrees(np.arccos(np.clip(c, -1, 1))))

        pd, gd = torch.rand(b, 1, 6, 6, generator=g) + 0.5, torch.rand(b, 1, 6, 6, generator=g) + 0.5
        dep.update(pd, {"depth_zbuffer": gd, "depth_zbuffer_mask": m})
        pv, gv = pd.numpy()[m.numpy()], gd.numpy()[m.numpy()]
        abs_b.append(np.abs(pv - gv).sum() / len(pv))
        ratios.append(np.maximum(pv / gv, gv / pv))

    tp = np.diag(conf)
    iou = [tp[i] / (conf[i].sum() + conf[:, i].sum() - tp[i]) for i in range(5) if tp[i] > 0]
    s = seg.compute()
    assert s["miou"] == pytest.approx(np.mean(iou) * 100)
    assert s["pixel_acc"] == pytest.approx(np.dot(accs, sizes) / sum(sizes) * 100)
    a = np.concatenate(angles)
    n = sn.compute()
    assert n["angle_mean"] == pytest.approx(a.mean(), abs=1e-3)
    assert n["angle_median"] == pytest.approx(np.median(a), abs=0.005 + 1e-4)
    assert n["within_22.5"] == pytest.approx((a <= 22.5).mean() * 100)
    d = dep.compute()
    assert d["abs_err"] == pytest.approx(np.dot(abs_b, sizes) / sum(sizes), rel=1e-6)
    assert d["delta_2"] == pytest.approx((np.concatenate(ratios) <= 1.25**2).mean() * 100)


def test_update_never_reads_tensors_back_to_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy for "no per-batch device sync": update() must not turn any tensor into a Python value."""
    meters = []
    for ds in ("nyuv2", "taskonomy", "synthetic_scenes"):
        for name in ("segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"):
            if ds == "nyuv2" and name in ("keypoints2d", "edge_texture"):
                continue
            meters.append((name, get_task(name, ds, class_weights=[1.0, 2.0, 3.0]).new_meter()))

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("host sync in update()")

    batch = {"segment_semantic": torch.tensor([[[0, 1], [2, 255]]]), "normal": torch.randn(1, 3, 2, 2),
             "depth_zbuffer": torch.rand(1, 1, 2, 2) + 0.1, "keypoints2d": torch.rand(1, 1, 2, 2),
             "edge_texture": torch.rand(1, 1, 2, 2)}
    for attr in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, attr, boom)
    for name, meter in meters:
        meter.update(torch.randn(1, 3, 1, 1) if name in ("segment_semantic", "normal") else torch.randn(1, 1, 1, 1),
                     batch)
    monkeypatch.undo()
    for _, meter in meters:
        assert all(math.isfinite(v) for v in meter.compute().values())


def test_conventions_pick_the_miou_rule_and_log_the_standard_one_beside() -> None:
    """The dataset's named conventions decide the mIoU rule; under the official rule the standard mIoU is
    reported beside it (aux key, not a ΔT metric). Same hand-computed confusion matrix as above."""
    from trainers.conventions import resolve

    batch = {"segment_semantic": torch.tensor(SEG_GT)}
    synthetic = get_task("segment_semantic", "synthetic_scenes",
                         **resolve("synthetic_scenes").task_options()).new_meter()
    synthetic.update(onehot_logits(SEG_PRED, 4), batch)
    out = synthetic.compute()
    assert out["miou"] == pytest.approx((0.25 + 1 / 3 + 0) / 3 * 100) and "miou_standard" not in out
    task = get_task("segment_semantic", "nyuv2", **resolve("nyuv2").task_options())
    nyu = task.new_meter()
    nyu.update(onehot_logits(SEG_PRED, 4), batch)
    out = nyu.compute()
    assert out["miou"] == pytest.approx((0.25 + 1 / 3) / 2 * 100)
    assert out["miou_standard"] == pytest.approx((0.25 + 1 / 3 + 0) / 3 * 100)
    assert "miou_standard" not in task.metric_directions  # never part of ΔT


def test_official_miou_rewards_dropping_a_hard_class_the_standard_one_does_not() -> None:
    """Ground truth: 4 pixels of class 0, 4 of class 1. Model A finds one class-1 pixel (and mislabels one
    class-0 pixel as 1); model B never predicts class 1. Official: B (class 1 dropped) > A; standard: A > B."""
    gt = torch.tensor([[[0, 0, 0, 0, 1, 1, 1, 1]]])
    a = torch.tensor([[[0, 0, 0, 1, 1, 0, 0, 0]]])  # IoU0 = 3/7, IoU1 = 1/5
    b = torch.tensor([[[0, 0, 0, 0, 0, 0, 0, 0]]])  # IoU0 = 4/8, IoU1 = 0 (TP = 0)
    scores = {}
    for rule in ("ignore", "present"):
        for name, pred in (("a", a), ("b", b)):
            meter = get_task("segment_semantic", "nyuv2", miou_absent=rule).new_meter()
            meter.update(onehot_logits(pred.tolist(), 2), {"segment_semantic": gt})
            scores[rule, name] = meter.compute()["miou"]
    assert scores["ignore", "a"] == pytest.approx((3 / 7 + 1 / 5) / 2 * 100)
    assert scores["ignore", "b"] == pytest.approx(4 / 8 * 100)
    assert scores["present", "b"] == pytest.approx((4 / 8 + 0) / 2 * 100)
    assert scores["ignore", "b"] > scores["ignore", "a"] and scores["present", "a"] > scores["present", "b"]
