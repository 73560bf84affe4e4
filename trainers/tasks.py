"""Tasks: loss + metrics + metric directions per (task, dataset) (DESIGN §3.4, METHODS_SPEC §5.3).

Losses follow the paper (§4.1.2) and the official ``pixel2pixel_loss.py``: the **label** (and its mask) is
resized to the prediction's resolution with nearest interpolation (predictions stay at backbone
resolution, e.g. 41×41 for a 321×321 label) and then

* ``segment_semantic``: cross-entropy with ``ignore_index=255`` (optional per-class weights, Taskonomy's
  ``semseg_prior_factor``, passed as ``class_weights``);
* ``normal``: ``1 − mean cos(normalize(pred), normalize(gt))`` over valid pixels;
* ``depth_zbuffer``, ``keypoints2d``, ``edge_texture``: L1 mean over valid pixels.

Validity comes from the batch's ``{task}_mask`` (our loaders always give explicit masks); the official
sentinel rules for raw labels (255 padding, NYUv2 ``depth > 3e-5``) are available with
``raw_validity=True``. Every loss is a masked mean ``Σ v·ℓ / max(Σ v, ε)``, so a batch with no valid pixel
gives 0 with a finite (zero) gradient instead of NaN, without a host sync.

``get_task(name, dataset, **opts)`` is the only constructor callers need; ``Task`` objects are picklable
(plain classes and ``functools.partial``), so they can cross Ray worker boundaries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.metrics import (
    IGNORE_INDEX,
    NYU_STYLE_DIRECTIONS,
    PERCENT_METRICS,
    TASKONOMY_DIRECTIONS,
    AbsErrMeter,
    CosineMeter,
    DepthMeter,
    Direction,
    Meter,
    NormalAngleMeter,
    ResizeMode,
    SegmentationCEMeter,
    SegmentationMeter,
    batch_mask,
    raw_validity,
    resize_to,
)

__all__ = ["DATASET_TASKS", "PERCENT_METRICS", "TASK_NAMES", "Task", "directions", "get_task"]

TASK_NAMES: tuple[str, ...] = ("segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture")
"""All task names (DESIGN §3.4), in the official order."""

DATASET_TASKS: dict[str, tuple[str, ...]] = {
    "nyuv2": ("segment_semantic", "normal", "depth_zbuffer"),
    "synthetic_scenes": TASK_NAMES,
    "taskonomy": TASK_NAMES,
}
"""Which tasks each dataset can evaluate."""

_EPS = 1e-12  # denominator floor: numerator is exactly 0 whenever the valid weight is 0

_OPTION_DEFAULTS: dict[str, Any] = {
    "class_weights": None,  # segmentation CE weights (Taskonomy semseg_prior_factor)
    "num_classes": None,  # segmentation classes; None = the logits' channel count
    "label_resize": "nearest",  # losses: label → prediction size
    "pred_resize": "nearest",  # meters: prediction → label size
    "raw_validity": False,  # also apply the official sentinel rules (255 padding, depth > 3e-5)
    "miou_absent": "ignore",  # official: drop classes with TP = 0
    "average": "batch",  # official batch-weighted means; "pooled" pools pixels
    "inclusive": True,  # official "≤" for within-angle and δ thresholds; False = strict "<"
    "delta_nonpositive": "outside",  # p ≤ 0 never counts within δ; "official" keeps the raw ratio
    "angle_bin_deg": 0.01,  # histogram bin for the median angle (|error| ≤ bin / 2)
}
_CHOICES: dict[str, tuple[Any, ...]] = {
    "label_resize": ("nearest", "nearest-exact"),
    "pred_resize": ("nearest", "nearest-exact", "bilinear"),
    "miou_absent": ("ignore", "zero", "present"),
    "average": ("batch", "pooled"),
    "delta_nonpositive": ("outside", "official"),
}


# --------------------------------------------------------------------------------------------- losses
class _DenseLoss:
    """Shared label handling: resize label + mask to the prediction, build the validity mask."""

    def __init__(self, task: str, dataset: str, *, label_resize: ResizeMode, raw_validity: bool) -> None:
        self.task = task
        self.dataset = dataset
        self.label_resize: ResizeMode = label_resize
        self.raw_validity = raw_validity

    def _target(self, pred: Tensor, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        size = pred.shape[-2:]
        target = batch[self.task]
        valid = batch_mask(batch, self.task, target)
        if self.raw_validity:
            valid = valid & raw_validity(self.task, self.dataset, target)
        target = resize_to(target.float(), size, self.label_resize)
        valid = resize_to(valid, size, self.label_resize)
        # Zero the invalid label values so NaN/inf sentinels cannot leak into the gradient.
        return torch.where(valid, target, 0.0), valid


class SegLoss(_DenseLoss):
    """Cross-entropy with ``ignore_index=255`` and optional class weights.

    Computed as ``Σ w_y·nll / Σ w_y`` over non-ignored pixels, which is exactly PyTorch's weighted-mean
    reduction but stays finite (0) when every pixel is ignored. A ``segment_semantic_mask`` (not emitted by
    the official-style loaders) is honoured by treating masked pixels as ignored.
    """

    def __init__(self, task: str, dataset: str, *, class_weights: Sequence[float] | None = None,
                 label_resize: ResizeMode = "nearest", raw_validity: bool = False) -> None:
        super().__init__(task, dataset, label_resize=label_resize, raw_validity=raw_validity)
        self.class_weights = None if class_weights is None else tuple(float(w) for w in class_weights)
        self._w_cache: dict[torch.device, Tensor] = {}

    def __call__(self, pred: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        c = pred.shape[1]
        label = batch[self.task]
        if f"{self.task}_mask" in batch:
            keep = batch_mask(batch, self.task, label)[:, 0]
            label = torch.where(keep, label, torch.full_like(label, IGNORE_INDEX))
        label = resize_to(label.unsqueeze(1), pred.shape[-2:], self.label_resize)[:, 0].long()
        valid = (label != IGNORE_INDEX) & (label >= 0) & (label < c)
        safe = torch.where(valid, label, torch.zeros_like(label))
        nll = F.cross_entropy(pred.float(), safe, reduction="none")
        w = valid.float()
        if self.class_weights is not None:
            w = w * self._weights(pred.device, c)[safe]
        return (w * nll).sum() / w.sum().clamp(min=_EPS)

    def _weights(self, device: torch.device, c: int) -> Tensor:
        assert self.class_weights is not None
        if len(self.class_weights) != c:
            raise ValueError(f"{self.task}: {len(self.class_weights)} class weights for {c} classes")
        if device not in self._w_cache:
            self._w_cache[device] = torch.tensor(self.class_weights, dtype=torch.float32, device=device)
        return self._w_cache[device]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_w_cache": {}}  # device tensors do not travel between workers


class NormalLoss(_DenseLoss):
    """``1 − cos(normalize(pred), normalize(gt))`` averaged over valid pixels (0 for none)."""

    def __call__(self, pred: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        target, valid = self._target(pred, batch)
        # float32 math: bf16/fp16 sums of ~10^4 pixels would be visibly wrong.
        cos = (F.normalize(pred.float(), dim=1) * F.normalize(target, dim=1)).sum(dim=1, keepdim=True)
        v = valid.float()
        return ((1 - cos) * v).sum() / v.sum().clamp(min=_EPS)


class L1Loss(_DenseLoss):
    """Mean ``|pred − gt|`` over valid pixels (0 for none)."""

    def __call__(self, pred: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        target, valid = self._target(pred, batch)
        v = valid.float()
        return ((pred.float() - target).abs() * v).sum() / v.sum().clamp(min=_EPS)


# --------------------------------------------------------------------------------------------- Task
@dataclass(frozen=True, eq=False)
class Task:
    """One task of one dataset: its loss, its meters and the direction of each metric."""

    name: str
    dataset: str
    metric_directions: dict[str, Direction]
    loss_fn: Callable[[Tensor, Mapping[str, Tensor]], Tensor] = field(repr=False)
    meter_factory: Callable[[], Meter] = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    def loss(self, pred: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Scalar training loss; ``pred`` at backbone resolution, the label is resized to it."""
        return self.loss_fn(pred, batch)

    def new_meter(self) -> Meter:
        """A fresh meter (``update(pred, batch)`` / ``compute()`` / ``reset()``)."""
        return self.meter_factory()


def _style(dataset: str) -> dict[str, dict[str, Direction]]:
    if dataset not in DATASET_TASKS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASET_TASKS))}")
    return TASKONOMY_DIRECTIONS if dataset == "taskonomy" else NYU_STYLE_DIRECTIONS


def _check_task(name: str, dataset: str) -> None:
    _style(dataset)
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}")
    if name not in DATASET_TASKS[dataset]:
        raise ValueError(f"task {name!r} is not available on dataset {dataset!r}")


def _resolve(opts: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(opts) - set(_OPTION_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown task option(s) {', '.join(unknown)}; known: {', '.join(sorted(_OPTION_DEFAULTS))}")
    o = {**_OPTION_DEFAULTS, **opts}
    for key, allowed in _CHOICES.items():
        if o[key] not in allowed:
            raise ValueError(f"task option {key}={o[key]!r} not in {allowed}")
    if isinstance(o["class_weights"], Tensor):
        o["class_weights"] = o["class_weights"].detach().cpu().flatten().tolist()
    if o["class_weights"] is not None:
        o["class_weights"] = tuple(float(w) for w in o["class_weights"])
    return o


def _meter_factory(name: str, dataset: str, o: Mapping[str, Any]) -> Callable[[], Meter]:
    common = {"pred_resize": o["pred_resize"]}
    dense = {**common, "dataset": dataset, "raw_validity": o["raw_validity"]}
    if name == "segment_semantic":
        if dataset == "taskonomy":
            return functools.partial(SegmentationCEMeter, name, num_classes=o["num_classes"],
                                     class_weights=o["class_weights"], average=o["average"], **common)
        return functools.partial(SegmentationMeter, name, num_classes=o["num_classes"],
                                 miou_absent=o["miou_absent"], average=o["average"], **common)
    if name == "normal":
        if dataset == "taskonomy":
            return functools.partial(CosineMeter, name, **dense)
        return functools.partial(NormalAngleMeter, name, bin_deg=o["angle_bin_deg"], inclusive=o["inclusive"],
                                 **dense)
    if name == "depth_zbuffer" and dataset != "taskonomy":
        return functools.partial(DepthMeter, name, average=o["average"], inclusive=o["inclusive"],
                                 nonpositive=o["delta_nonpositive"], **dense)
    return functools.partial(AbsErrMeter, name, average=o["average"], **dense)


def get_task(name: str, dataset: str, **opts: Any) -> Task:
    """Build the Task for ``name`` on ``dataset`` (options: see ``_OPTION_DEFAULTS``; defaults = official).

    Options that do not apply to ``name`` are accepted and ignored, so one option dict can be passed to
    every task; unknown option names raise ``ValueError``.
    """
    _check_task(name, dataset)
    o = _resolve(opts)
    resize = {"label_resize": o["label_resize"], "raw_validity": o["raw_validity"]}
    loss_fn: Callable[[Tensor, Mapping[str, Tensor]], Tensor]
    if name == "segment_semantic":
        loss_fn = SegLoss(name, dataset, class_weights=o["class_weights"], **resize)
    elif name == "normal":
        loss_fn = NormalLoss(name, dataset, **resize)
    else:
        loss_fn = L1Loss(name, dataset, **resize)
    return Task(
        name=name,
        dataset=dataset,
        metric_directions=dict(_style(dataset)[name]),
        loss_fn=loss_fn,
        meter_factory=_meter_factory(name, dataset, o),
        options=o,
    )


def directions(tasks: Sequence[str], dataset: str) -> dict[str, dict[str, Direction]]:
    """``{task: {metric: "higher"|"lower"}}`` for ``tasks`` on ``dataset`` (input to ΔT)."""
    for t in tasks:
        _check_task(t, dataset)
    style = _style(dataset)
    return {t: dict(style[t]) for t in tasks}
