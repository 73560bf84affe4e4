"""Losses and the Task API against hand-computed numbers on tiny tensors."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from trainers.tasks import DATASET_TASKS, TASK_NAMES, directions, get_task

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def uniform_logits(b: int, h: int, w: int, first: float) -> torch.Tensor:
    """Two-class logits (first, 0) everywhere, requiring grad."""
    x = torch.zeros(b, 2, h, w)
    x[:, 0] = first
    return x.requires_grad_()


# ------------------------------------------------------------------------------------------ segmentation
def test_ce_ignores_255() -> None:
    loss = get_task("segment_semantic", "nyuv2").loss(
        uniform_logits(1, 1, 2, 0.0), {"segment_semantic": torch.tensor([[[0, 255]]])}
    )
    assert loss.item() == pytest.approx(LN2)


def seg_label_4x4() -> torch.Tensor:
    # nearest 4x4 -> 2x2 samples (0,0) (0,2) (2,0) (2,2) = 0, 255, 1, 255; every other pixel is 1
    lab = torch.ones(1, 4, 4, dtype=torch.long)
    lab[0, 0, 0], lab[0, 0, 2], lab[0, 2, 0], lab[0, 2, 2] = 0, 255, 1, 255
    return lab


def test_ce_resizes_label_to_prediction_nearest() -> None:
    # logits (ln3, 0): p0 = 3/4, p1 = 1/4 -> gt 0: ln(4/3), gt 1: ln4
    loss = get_task("segment_semantic", "nyuv2").loss(uniform_logits(1, 2, 2, LN3), {"segment_semantic": seg_label_4x4()})
    assert loss.item() == pytest.approx((math.log(4 / 3) + LN4) / 2)  # 0.836988


def test_ce_class_weights() -> None:
    task = get_task("segment_semantic", "taskonomy", class_weights=torch.tensor([1.0, 3.0]))
    loss = task.loss(uniform_logits(1, 2, 2, LN3), {"segment_semantic": seg_label_4x4()})
    assert loss.item() == pytest.approx((math.log(4 / 3) + 3 * LN4) / 4)  # 1.111641
    ref = torch.nn.functional.cross_entropy(
        uniform_logits(1, 2, 2, LN3), torch.tensor([[[0, 255], [1, 255]]]), weight=torch.tensor([1.0, 3.0]),
        ignore_index=255)
    assert loss.item() == pytest.approx(ref.item())


def test_ce_honours_an_explicit_seg_mask() -> None:
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 2, 0] = False  # hides the gt-1 sample, only the gt-0 sample is left
    batch = {"segment_semantic": seg_label_4x4(), "segment_semantic_mask": mask}
    loss = get_task("segment_semantic", "nyuv2").loss(uniform_logits(1, 2, 2, LN3), batch)
    assert loss.item() == pytest.approx(math.log(4 / 3))


# ------------------------------------------------------------------------------------------ normal
def test_normal_loss_zero_for_same_direction_one_for_orthogonal() -> None:
    task = get_task("normal", "nyuv2")
    gt = torch.zeros(1, 3, 2, 2)
    gt[:, 2] = 1.0
    same = (gt * 7.0).requires_grad_()  # same direction, different magnitude
    assert task.loss(same, {"normal": gt * 0.5}).item() == pytest.approx(0.0, abs=1e-6)
    ortho = torch.zeros(1, 3, 2, 2)
    ortho[:, 0] = 3.0
    assert task.loss(ortho, {"normal": gt}).item() == pytest.approx(1.0, abs=1e-6)


def test_normal_loss_mask_and_resize() -> None:
    # 4x4 gt: samples at (0,0) (0,2) (2,0) (2,2) point along x, x, -x (masked), y ; prediction along x
    gt = torch.zeros(1, 3, 4, 4)
    gt[:, 2] = 1.0  # every non-sampled pixel would give cos 0
    for (i, j), v in {(0, 0): [1, 0, 0], (0, 2): [1, 0, 0], (2, 0): [-1, 0, 0], (2, 2): [0, 1, 0]}.items():
        gt[0, :, i, j] = torch.tensor(v, dtype=torch.float)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 2, 0] = False
    pred = torch.zeros(1, 3, 2, 2)
    pred[:, 0] = 1.0
    loss = get_task("normal", "nyuv2").loss(pred, {"normal": gt, "normal_mask": mask})
    assert loss.item() == pytest.approx(1 - (1 + 1 + 0) / 3)


# ------------------------------------------------------------------------------------------ L1
@pytest.mark.parametrize("task", ["depth_zbuffer", "keypoints2d", "edge_texture"])
def test_l1_resizes_label_and_mask_nearest(task: str) -> None:
    label = torch.arange(16, dtype=torch.float).view(1, 1, 4, 4)  # nearest picks 0, 2, 8, 10
    t = get_task(task, "taskonomy")
    assert t.loss(torch.zeros(1, 1, 2, 2), {task: label}).item() == pytest.approx(5.0)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 2, 2] = False  # drops the sample 10
    assert t.loss(torch.zeros(1, 1, 2, 2), {task: label, f"{task}_mask": mask}).item() == pytest.approx(10 / 3)


def test_raw_validity_uses_official_sentinels() -> None:
    label = torch.tensor([[[[0.5, 255.0]]]])
    assert get_task("keypoints2d", "taskonomy", raw_validity=True).loss(
        torch.zeros(1, 1, 1, 2), {"keypoints2d": label}).item() == pytest.approx(0.5)
    depth = torch.tensor([[[[2.0, 0.0]]]])  # NYUv2 rule: gt > 3e-5
    assert get_task("depth_zbuffer", "nyuv2", raw_validity=True).loss(
        torch.ones(1, 1, 1, 2), {"depth_zbuffer": depth}).item() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ no valid pixel
@pytest.mark.parametrize(("task", "channels"), [("segment_semantic", 3), ("normal", 3), ("depth_zbuffer", 1),
                                                ("keypoints2d", 1), ("edge_texture", 1)])
def test_all_invalid_gives_zero_loss_and_finite_grad(task: str, channels: int) -> None:
    pred = torch.randn(2, channels, 2, 2, requires_grad=True)
    if task == "segment_semantic":
        batch = {task: torch.full((2, 4, 4), 255, dtype=torch.long)}
    else:
        batch = {task: torch.full((2, channels, 4, 4), float("nan")),
                 f"{task}_mask": torch.zeros(2, 1, 4, 4, dtype=torch.bool)}
    loss = get_task(task, "synthetic_scenes").loss(pred, batch)
    loss.backward()
    assert loss.item() == 0.0
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and (pred.grad == 0).all()


# ------------------------------------------------------------------------------------------ API
def test_task_api_and_directions() -> None:
    t = get_task("depth_zbuffer", "nyuv2")
    assert t.name == "depth_zbuffer"
    assert t.metric_directions == {"abs_err": "lower", "rel_err": "lower", "delta_1": "higher",
                                   "delta_2": "higher", "delta_3": "higher"}
    assert directions(["segment_semantic", "normal"], "taskonomy") == {
        "segment_semantic": {"err": "lower"}, "normal": {"cosine_similarity": "higher"}}
    assert directions(["segment_semantic"], "nyuv2") == {"segment_semantic": {"miou": "higher", "pixel_acc": "higher"}}
    assert TASK_NAMES == ("segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture")
    for ds, tasks in DATASET_TASKS.items():
        for name in tasks:
            task = get_task(name, ds)
            assert set(task.metric_directions.values()) <= {"higher", "lower"}
            assert task.new_meter().keys == tuple(task.metric_directions)


def test_task_pickles_and_still_works() -> None:
    t = pickle.loads(pickle.dumps(get_task("segment_semantic", "taskonomy", class_weights=[1.0, 3.0])))
    loss = t.loss(uniform_logits(1, 2, 2, LN3), {"segment_semantic": seg_label_4x4()})
    assert loss.item() == pytest.approx((math.log(4 / 3) + 3 * LN4) / 4)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: get_task("depth", "nyuv2"), "unknown task 'depth'"),
        (lambda: get_task("normal", "cityscapes"), "unknown dataset 'cityscapes'"),
        (lambda: get_task("keypoints2d", "nyuv2"), "not available on dataset 'nyuv2'"),
        (lambda: get_task("normal", "nyuv2", bogus=1), "unknown task option"),
        (lambda: get_task("normal", "nyuv2", miou_absent="maybe"), "miou_absent"),
        (lambda: directions(["segment_semantic", "edges"], "taskonomy"), "unknown task 'edges'"),
    ],
)
def test_errors_are_one_line_value_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
