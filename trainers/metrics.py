"""Evaluation meters for the dense-prediction tasks (DESIGN §3.4, METHODS_SPEC §5.4).

Every meter follows the official AdapMTL evaluation (``data/pixel2pixel_metrics.py``) unless an option
says otherwise:

* the **prediction** is resized to the label size (nearest, ``F.interpolate`` default) before scoring;
* "batch-weighted" means ``Σ_b value_b · B_b / Σ_b B_b`` over ``update()`` calls (``average="batch"``);
  ``average="pooled"`` instead pools every valid pixel of the split;
* metrics marked in :data:`PERCENT_METRICS` are returned in percent, as the paper's tables print them
  (the official code returns mIoU and pixel accuracy as fractions).

Meters keep only sum-reducible device tensors (counts, sums, a confusion matrix, an angle histogram), so
``update()`` never synchronises with the host (no boolean indexing, no ``.item()``) and memory stays bounded
whatever the split size. ``compute()`` does the single device→host transfer. Because every state tensor is a
sum, :meth:`Meter.all_reduce_` can merge meters across data-parallel ranks with one SUM all-reduce each.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Direction = Literal["higher", "lower"]
ResizeMode = Literal["nearest", "nearest-exact", "bilinear"]
Average = Literal["batch", "pooled"]
MiouAbsent = Literal["ignore", "zero", "present"]
DeltaNonPositive = Literal["outside", "official"]

IGNORE_INDEX = 255
"""Segmentation label that marks pixels to ignore (DESIGN batch format)."""

PERCENT_METRICS: frozenset[str] = frozenset(
    {"miou", "pixel_acc", "within_11.25", "within_22.5", "within_30", "delta_1", "delta_2", "delta_3"}
)
"""Metric keys reported in percent (0–100) rather than as fractions."""

NORMAL_THRESHOLDS: tuple[float, ...] = (11.25, 22.5, 30.0)
DEPTH_THRESHOLDS: tuple[float, ...] = (1.25, 1.25**2, 1.25**3)

NYU_STYLE_DIRECTIONS: dict[str, dict[str, Direction]] = {
    "segment_semantic": {"miou": "higher", "pixel_acc": "higher"},
    "normal": {
        "angle_mean": "lower",
        "angle_median": "lower",
        "within_11.25": "higher",
        "within_22.5": "higher",
        "within_30": "higher",
    },
    "depth_zbuffer": {
        "abs_err": "lower",
        "rel_err": "lower",
        "delta_1": "higher",
        "delta_2": "higher",
        "delta_3": "higher",
    },
    "keypoints2d": {"abs_err": "lower"},
    "edge_texture": {"abs_err": "lower"},
}
"""Metric directions of the NYUv2-style evaluation (used for nyuv2 and synthetic_scenes)."""

TASKONOMY_DIRECTIONS: dict[str, dict[str, Direction]] = {
    "segment_semantic": {"err": "lower"},
    "normal": {"cosine_similarity": "higher"},
    "depth_zbuffer": {"abs_err": "lower"},
    "keypoints2d": {"abs_err": "lower"},
    "edge_texture": {"abs_err": "lower"},
}
"""Metric directions of the Taskonomy evaluation (the supplement's tables)."""


# --------------------------------------------------------------------------------------------- helpers
def resize_to(x: Tensor, size: Sequence[int], mode: ResizeMode = "nearest") -> Tensor:
    """Resize the spatial dims of ``x`` ([B, C, H, W]) to ``size``.

    ``nearest`` is ``F.interpolate``'s default and what the official code uses both for labels (losses)
    and predictions (metrics). Integer and bool tensors go through float32 (exact for ids < 2^24) because
    nearest interpolation is not implemented for every integer dtype on every device; the dtype is
    restored afterwards. ``bilinear`` is only meaningful for predictions.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "bilinear":
        return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    if x.is_floating_point():
        return F.interpolate(x, size=size, mode=mode)
    out = F.interpolate(x.float(), size=size, mode=mode)
    return out > 0.5 if x.dtype == torch.bool else out.round().to(x.dtype)


def batch_mask(batch: Mapping[str, Tensor], task: str, like: Tensor) -> Tensor:
    """The explicit validity mask of ``task`` as bool [B, 1, H, W] (all True when absent).

    A 3-channel mask (Taskonomy's tiled normal mask) is reduced to its first channel, as the official code
    does; a [B, H, W] mask gets its channel dim.
    """
    mask = batch.get(f"{task}_mask")
    b, h, w = like.shape[0], like.shape[-2], like.shape[-1]
    if mask is None:
        return torch.ones((b, 1, h, w), dtype=torch.bool, device=like.device)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    return mask[:, :1].to(device=like.device, dtype=torch.bool)


def raw_validity(task: str, dataset: str, target: Tensor) -> Tensor:
    """The official code's implicit validity rules for raw-encoded labels, as bool [B, 1, H, W].

    Only used with ``raw_validity=True`` (our loaders give explicit masks): normals are invalid where any
    channel is 255 (NYUv2 PNG encoding / Taskonomy crop padding); depth is invalid at 255 (Taskonomy
    padding) and, for NYUv2-style data, where ``gt ≤ 3e-5`` (the official no-mask rule); keypoints and
    edges are invalid at 255.
    """
    if task == "normal":
        return (target.amax(dim=1, keepdim=True) < 255).bool()
    if task == "depth_zbuffer":
        valid = target != 255
        if dataset != "taskonomy":
            valid = valid & (target.sum(dim=1, keepdim=True) > 3e-5)
        return valid
    return target != 255


def _acc_dtype(device: torch.device) -> torch.dtype:
    """float64 accumulators (exact sums over a whole split) except where the backend lacks float64."""
    return torch.float32 if device.type == "mps" else torch.float64


# --------------------------------------------------------------------------------------------- base
class Meter(ABC):
    """Accumulates one task's metrics over a split.

    Subclasses implement ``_init_state`` (allocate zeroed, sum-reducible tensors on the prediction's
    device), ``_update`` and ``_compute`` (returns ``{key: 0-dim tensor}``); the base class handles lazy
    allocation, ``no_grad`` and the single host transfer.
    """

    keys: tuple[str, ...] = ()
    #: extra keys reported beside ``keys`` (e.g. the standard mIoU under the official convention); they are
    #: logged but never enter ΔT or the task's metric directions
    aux_keys: tuple[str, ...] = ()

    def __init__(self, task: str, *, pred_resize: ResizeMode = "nearest") -> None:
        self.task = task
        self.pred_resize: ResizeMode = pred_resize
        self._state: dict[str, Tensor] | None = None

    # public API ----------------------------------------------------------------------------------
    def update(self, pred: Tensor, batch: Mapping[str, Tensor]) -> None:
        """Add one batch. ``pred`` is at backbone resolution; it is resized to the label size here."""
        with torch.no_grad():
            target = batch[self.task]
            pred = resize_to(pred.detach(), target.shape[-2:], self.pred_resize)
            if self._state is None:
                self._state = self._init_state(pred, target)
            self._update(self._state, pred, target, batch)

    def compute(self) -> dict[str, float]:
        """Final metrics (percent metrics in percent); one device→host synchronisation."""
        if self._state is None:
            raise RuntimeError(f"meter for task {self.task!r} has no data: call update() first")
        with torch.no_grad():
            values = self._compute(self._state)
            dt = _acc_dtype(next(iter(self._state.values())).device)
            names = (*self.keys, *self.aux_keys)
            host = torch.stack([values[k].to(dt) for k in names]).cpu().tolist()
        return {k: float(v) for k, v in zip(names, host)}

    def reset(self) -> None:
        """Forget everything accumulated (the next update re-allocates on the prediction's device)."""
        self._state = None

    def _thresholds(self, values: Sequence[float], like: Tensor) -> Tensor:
        """Thresholds as a [K, 1] device tensor, cached so no host→device copy happens per batch."""
        cache = self.__dict__.setdefault("_thr_cache", {})
        key = (tuple(values), like.device, like.dtype)
        if key not in cache:
            cache[key] = torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1)
        return cache[key]

    def state(self) -> dict[str, Tensor]:
        """The raw accumulators (all sums), e.g. for checkpointing or custom reductions."""
        return {} if self._state is None else dict(self._state)

    def all_reduce_(self, group: object | None = None) -> None:
        """SUM-reduce the accumulators across ``torch.distributed`` ranks, in place.

        Every rank must have called ``update()`` at least once (state is allocated lazily).
        """
        import torch.distributed as dist

        if self._state is None:
            raise RuntimeError(f"meter for task {self.task!r} has no data to all-reduce")
        if dist.is_available() and dist.is_initialized():
            for t in self._state.values():
                dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)

    # subclass hooks --------------------------------------------------------------------------------
    @abstractmethod
    def _init_state(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]: ...

    @abstractmethod
    def _update(self, s: dict[str, Tensor], pred: Tensor, target: Tensor, batch: Mapping[str, Tensor]) -> None: ...

    @abstractmethod
    def _compute(self, s: dict[str, Tensor]) -> dict[str, Tensor]: ...


class _WeightedMean:
    """Helpers for "batch-weighted" (official) vs "pooled" means of a per-pixel quantity.

    State per quantity q: ``q_bsum`` (Σ_b mean_b·B_b), ``q_bw`` (Σ_b B_b over batches with ≥ 1 valid
    pixel), ``q_psum`` (Σ pixels) and the shared pixel count ``n``. A batch with no valid pixel would be NaN
    in the official code; here it is skipped (weight 0) so one empty batch cannot poison the split.
    """

    @staticmethod
    def zeros(names: Sequence[str], device: torch.device) -> dict[str, Tensor]:
        dt = _acc_dtype(device)
        s = {"n": torch.zeros((), dtype=dt, device=device), "bw": torch.zeros((), dtype=dt, device=device)}
        for q in names:
            s[f"{q}_bsum"] = torch.zeros((), dtype=dt, device=device)
            s[f"{q}_psum"] = torch.zeros((), dtype=dt, device=device)
        return s

    @staticmethod
    def add(s: dict[str, Tensor], batch_size: int, n_valid: Tensor, sums: Mapping[str, Tensor]) -> None:
        dt = s["n"].dtype
        n = n_valid.to(dt)
        has = (n > 0).to(dt)
        s["n"] += n
        s["bw"] += has * batch_size
        for q, total in sums.items():
            total = total.to(dt)
            s[f"{q}_psum"] += total
            s[f"{q}_bsum"] += total / n.clamp(min=1) * batch_size * has

    @staticmethod
    def mean(s: dict[str, Tensor], q: str, average: Average) -> Tensor:
        if average == "pooled":
            return s[f"{q}_psum"] / s["n"].clamp(min=1)
        return s[f"{q}_bsum"] / s["bw"].clamp(min=1)


# --------------------------------------------------------------------------------------------- segmentation
def _seg_valid(target: Tensor, num_classes: int, batch: Mapping[str, Tensor], task: str) -> Tensor:
    """Pixels with ``0 ≤ gt < C`` (the official ``gt < C`` rule, which also drops 255), honouring an
    explicit ``segment_semantic_mask`` if a loader provides one. Returns bool [B, H, W]."""
    valid = (target >= 0) & (target < num_classes)
    if f"{task}_mask" in batch:
        valid = valid & batch_mask(batch, task, target)[:, 0]
    return valid


class SegmentationMeter(Meter):
    """NYUv2-style segmentation: ``miou`` and ``pixel_acc`` (percent).

    mIoU comes from a global confusion matrix over pixels with ``gt < C``; ``IoU_c = TP/(row+col−TP)``.
    Which classes enter the mean is ``miou_absent``:

    * ``"ignore"`` (official default): only classes with TP > 0 (a class never predicted correctly is
      dropped, not counted as 0 — this inflates mIoU relative to the usual definition);
    * ``"present"`` (usual definition): classes that occur in gt or prediction (union > 0);
    * ``"zero"``: all C classes, classes never seen counting 0.

    If no class qualifies the result is 0 (the official code would give NaN). ``pixel_acc`` is the official
    per-batch accuracy over valid pixels, batch-weighted (``average="batch"``), or pooled over all valid
    pixels (``average="pooled"``). Under any rule but ``"present"`` the standard mIoU is reported beside it as
    the auxiliary key ``miou_standard``, so every run carries the comparable number.
    """

    keys = ("miou", "pixel_acc")

    def __init__(
        self,
        task: str = "segment_semantic",
        *,
        num_classes: int | None = None,
        miou_absent: MiouAbsent = "ignore",
        average: Average = "batch",
        pred_resize: ResizeMode = "nearest",
    ) -> None:
        super().__init__(task, pred_resize=pred_resize)
        self.num_classes = num_classes
        self.miou_absent: MiouAbsent = miou_absent
        self.average: Average = average
        self.aux_keys = () if miou_absent == "present" else ("miou_standard",)

    def _init_state(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        c = _check_classes(pred, self.num_classes, self.task)
        self.num_classes = c  # later batches must agree with the confusion matrix
        s = _WeightedMean.zeros(["correct"], pred.device)
        s["conf"] = torch.zeros(c * c, dtype=torch.int64, device=pred.device)
        return s

    def _update(self, s: dict[str, Tensor], pred: Tensor, target: Tensor, batch: Mapping[str, Tensor]) -> None:
        c = _check_classes(pred, self.num_classes, self.task)
        valid = _seg_valid(target, c, batch, self.task)
        gt = torch.where(valid, target, torch.zeros_like(target)).long()
        am = pred.argmax(dim=1)
        s["conf"].scatter_add_(0, (gt * c + am).flatten(), valid.flatten().long())
        correct = ((am == gt) & valid).sum()
        _WeightedMean.add(s, target.shape[0], valid.sum(), {"correct": correct})

    def _compute(self, s: dict[str, Tensor]) -> dict[str, Tensor]:
        c = math.isqrt(s["conf"].numel())
        conf = s["conf"].view(c, c).to(s["n"].dtype)
        out = {"miou": _miou(conf, self.miou_absent) * 100,
               "pixel_acc": _WeightedMean.mean(s, "correct", self.average) * 100}
        if self.aux_keys:
            out["miou_standard"] = _miou(conf, "present") * 100
        return out


def _miou(conf: Tensor, absent: MiouAbsent) -> Tensor:
    """Mean IoU of a [C, C] confusion matrix (rows gt, columns prediction) under an absent-class rule."""
    tp = conf.diagonal()
    union = conf.sum(dim=1) + conf.sum(dim=0) - tp
    iou = tp / union.clamp(min=1)
    if absent == "ignore":
        keep = tp > 0
    elif absent == "present":
        keep = union > 0
    else:
        keep = torch.ones_like(tp, dtype=torch.bool)
    keep_f = keep.to(iou.dtype)
    return (iou * keep_f).sum() / keep_f.sum().clamp(min=1)


class SegmentationCEMeter(Meter):
    """Taskonomy segmentation ``err``: class-weighted cross-entropy on pixels with ``gt < C``.

    Per batch the weighted mean ``Σ w_y·nll / Σ w_y`` (PyTorch's weighted CE reduction), batch-weighted
    over the split (official); ``average="pooled"`` pools numerator and denominator instead. The standard
    mIoU of the argmax is reported beside it (auxiliary ``miou_standard``, not part of ΔT).
    """

    keys = ("err",)
    aux_keys = ("miou_standard",)

    def __init__(
        self,
        task: str = "segment_semantic",
        *,
        num_classes: int | None = None,
        class_weights: Sequence[float] | None = None,
        average: Average = "batch",
        pred_resize: ResizeMode = "nearest",
    ) -> None:
        super().__init__(task, pred_resize=pred_resize)
        self.num_classes = num_classes
        self.class_weights = None if class_weights is None else tuple(float(w) for w in class_weights)
        self.average: Average = average

    def _init_state(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        c = _check_classes(pred, self.num_classes, self.task)
        self.num_classes = c
        if self.class_weights is not None and len(self.class_weights) != c:
            raise ValueError(f"{self.task}: {len(self.class_weights)} class weights for {c} classes")
        s = _WeightedMean.zeros(["err"], pred.device)
        s["conf"] = torch.zeros(c * c, dtype=torch.int64, device=pred.device)
        w = torch.ones(c) if self.class_weights is None else torch.tensor(self.class_weights)
        self._w = w.to(device=pred.device, dtype=torch.float32)
        return s

    def _update(self, s: dict[str, Tensor], pred: Tensor, target: Tensor, batch: Mapping[str, Tensor]) -> None:
        c = _check_classes(pred, self.num_classes, self.task)
        valid = _seg_valid(target, c, batch, self.task)
        gt = torch.where(valid, target, torch.zeros_like(target)).long()
        nll = F.cross_entropy(pred.float(), gt, reduction="none")
        s["conf"].scatter_add_(0, (gt * c + pred.argmax(dim=1)).flatten(), valid.flatten().long())
        w = self._w[gt] * valid
        # _WeightedMean divides by a pixel count; here the per-batch denominator is Σ w, so feed Σ w as
        # the "count" (pooled mode then gives Σ w·nll / Σ w over the split, as wanted).
        _WeightedMean.add(s, target.shape[0], w.sum(), {"err": (w * nll).sum()})

    def _compute(self, s: dict[str, Tensor]) -> dict[str, Tensor]:
        c = math.isqrt(s["conf"].numel())
        conf = s["conf"].view(c, c).to(s["n"].dtype)
        return {"err": _WeightedMean.mean(s, "err", self.average), "miou_standard": _miou(conf, "present") * 100}


def _check_classes(pred: Tensor, num_classes: int | None, task: str) -> int:
    """Class count = logits channels; must match ``num_classes`` (or the first batch's count)."""
    c = int(pred.shape[1])
    if num_classes is not None and c != num_classes:
        raise ValueError(f"{task}: prediction has {c} channels, expected {num_classes} classes")
    return c


# --------------------------------------------------------------------------------------------- normals
def _cosine(pred: Tensor, target: Tensor) -> Tensor:
    """Cosine between L2-normalised prediction and target, [B, 1, H, W], clipped to [-1, 1].

    The target is normalised as is, so the official raw NYUv2 encoding (0–255 BGR) works unchanged.
    """
    p = F.normalize(pred.float(), dim=1)
    g = F.normalize(target.float(), dim=1)
    return (p * g).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)


def _dense_valid(meter: Meter, target: Tensor, batch: Mapping[str, Tensor], dataset: str, raw: bool) -> Tensor:
    valid = batch_mask(batch, meter.task, target)
    if raw:
        valid = valid & raw_validity(meter.task, dataset, target)
    return valid


class NormalAngleMeter(Meter):
    """NYUv2-style normals: ``angle_mean``, ``angle_median`` (degrees) and ``within_{11.25,22.5,30}`` (%).

    All pooled over the valid pixels of the split (official). The mean and the within-percentages are
    exact (float64 sums / integer counts of float32 angles, like the official float32 numpy arrays).
    The median comes from a histogram with ``bin_deg`` wide bins over [0°, 180°] (18 001 int64 bins at the
    default 0.01° ≈ 144 KiB); it returns the centre of the bin holding the median rank(s) (the mean of the
    two middle ranks for an even count, like ``np.median``), so ``|error| ≤ bin_deg / 2`` (up to float
    rounding at a bin edge). ``inclusive=True`` counts ``θ ≤ t`` (official ``np.less_equal``); ``False``
    counts ``θ < t`` (the paper's "within").
    """

    keys = ("angle_mean", "angle_median", "within_11.25", "within_22.5", "within_30")

    def __init__(
        self,
        task: str = "normal",
        *,
        dataset: str = "nyuv2",
        bin_deg: float = 0.01,
        inclusive: bool = True,
        raw_validity: bool = False,
        pred_resize: ResizeMode = "nearest",
    ) -> None:
        super().__init__(task, pred_resize=pred_resize)
        if not bin_deg > 0:
            raise ValueError(f"bin_deg must be positive, got {bin_deg}")
        self.dataset = dataset
        self.bin_deg = float(bin_deg)
        self.nbins = int(math.ceil(180.0 / self.bin_deg)) + 1
        self.inclusive = inclusive
        self.raw_validity = raw_validity

    def _init_state(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        dev, dt = pred.device, _acc_dtype(pred.device)
        return {
            "n": torch.zeros((), dtype=dt, device=dev),
            "angle_sum": torch.zeros((), dtype=dt, device=dev),
            "within": torch.zeros(len(NORMAL_THRESHOLDS), dtype=dt, device=dev),
            "hist": torch.zeros(self.nbins, dtype=torch.int64, device=dev),
        }

    def _update(self, s: dict[str, Tensor], pred: Tensor, target: Tensor, batch: Mapping[str, Tensor]) -> None:
        valid = _dense_valid(self, target, batch, self.dataset, self.raw_validity)
        angle = torch.rad2deg(torch.acos(_cosine(pred, target)))
        angle = torch.where(valid, angle, torch.zeros_like(angle))
        dt = s["n"].dtype
        s["n"] += valid.sum().to(dt)
        s["angle_sum"] += angle.to(dt).sum()
        thr = self._thresholds(NORMAL_THRESHOLDS, angle)
        flat_a, flat_v = angle.flatten(), valid.flatten()
        inside = flat_a.unsqueeze(0) <= thr if self.inclusive else flat_a.unsqueeze(0) < thr
        s["within"] += (inside & flat_v).sum(dim=1).to(dt)
        idx = (flat_a / self.bin_deg).floor().long().clamp(0, self.nbins - 1)
        s["hist"].scatter_add_(0, idx, flat_v.long())

    def _compute(self, s: dict[str, Tensor]) -> dict[str, Tensor]:
        n = s["n"].clamp(min=1)
        out = {"angle_mean": s["angle_sum"] / n, "angle_median": self._median(s["hist"]).to(n.dtype)}
        for key, cnt in zip(self.keys[2:], s["within"]):
            out[key] = cnt / n * 100
        return out

    def _median(self, hist: Tensor) -> Tensor:
        cum = hist.cumsum(0)
        total = cum[-1]
        ranks = torch.stack([(total - 1).clamp(min=0) // 2, total // 2])  # 0-based middle ranks
        bins = torch.searchsorted(cum, ranks, right=True).clamp(max=self.nbins - 1)
        return ((bins.to(_acc_dtype(hist.device)) + 0.5) * self.bin_deg).mean()


class CosineMeter(Meter):
    """Taskonomy normals: ``cosine_similarity`` = mean clipped cosine pooled over valid pixels (official)."""

    keys = ("cosine_similarity",)

    def __init__(
        self,
        task: str = "normal",
        *,
        dataset: str = "taskonomy",
        raw_validity: bool = False,
        pred_resize: ResizeMode = "nearest",
    ) -> None:
        super().__init__(task, pred_resize=pred_resize)
        self.dataset = dataset
        self.raw_validity = raw_validity

    def _init_state(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        dt = _acc_dtype(pred.device)
        return {"n": torch.zeros((), dtype=dt, device=pred.device), "cos_sum": torch.zeros((), dtype=dt, device=pred.device)}

    def _update(self, s: dict[str, Tensor], pred: Tensor, target: Tensor, batch: Mapping[str, Tensor]) -> None:
        valid = _dense_valid(self, target, batch, self.dataset, self.raw_validity)
        cos = torch.where(valid, _cosine(pred, target), 0.0)
        s["n"] += valid.sum().to(s["n"].dtype)
        s["cos_sum"] += cos.to(s["n"].dtype).sum()

    def _compute(self, s: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"cosine_similarity": s["cos_sum"] / s["n"].clamp(min=1)}


# --------------------------------------------------------------------------------------------- depth & L1
class DepthMeter(Meter):
    """NYUv2-style depth: ``abs_err``, ``rel_err`` and ``delta_{1,2,3}`` (%).

    ``abs_err = Σ|p−g|/N`` and ``rel_err = Σ(|p−g|/g)/N`` per batch, batch-weighted (official; ``average=
    "pooled"`` pools pixels). ``delta_k`` = % of pooled valid pixels with ``max(p/g, g/p) ≤ 1.25^k``
    (``inclusive=True``, official ``np.less_equal``; ``False`` = strict ``<``, the paper's "within").
    ``nonpositive="outside"`` (default) counts predictions ``p ≤ 0`` as outside every threshold; the
    official formula (``"official"``) takes the ratio as is, so a negative prediction gives a negative
    ratio and is counted *within* (p = 0 gives an infinite ratio, outside). Valid pixels are assumed to
    have ``g > 0`` (the loaders' masks guarantee it).
    """

    keys = ("abs_err", "rel_err", "delta_1", "delta_2", "delta_3")

    def __init__(
        self,
        task: str = "depth_zbuffer",
        *,
        dataset: str = "nyuv2",
        average: Average = "batch",
        inclusive: bool = True,
        nonpositive: DeltaNonPositive = "outside",
        raw_validity: bool = False,
        pred_resize: ResizeMode = "nearest",
    ) -> None:
        super().__init__(task, pred_resize=pred_resize)
        self.dataset = dataset
        self.average: Average = average
        self.inclusive = inclusive
        self.nonpositive: DeltaNonPositive = nonpositive
        self.raw_validity = raw_validity

    def _init_state(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        s = _WeightedMean.zeros(["abs", "rel"], pred.device)
        s["delta"] = torch.zeros(len(DEPTH_THRESHOLDS), dtype=s["n"].dtype, device=pred.device)
        return s

    def _update(self, s: dict[str, Tensor], pred: Tensor, target: Tensor, batch: Mapping[str, Tensor]) -> None:
        valid = _dense_valid(self, target, batch, self.dataset, self.raw_validity)
        p = pred.float()
        g = torch.where(valid, target.float(), torch.ones_like(p))  # keep invalid pixels finite
        err = torch.where(valid, (p - g).abs(), torch.zeros_like(p))
        rel = err / g
        _WeightedMean.add(s, target.shape[0], valid.sum(), {"abs": err.sum(), "rel": rel.sum()})
        ratio = torch.maximum(p / g, g / p)
        ok = valid if self.nonpositive == "official" else valid & (p > 0)
        ratio, ok = ratio.flatten().unsqueeze(0), ok.flatten()
        thr = self._thresholds(DEPTH_THRESHOLDS, ratio)
        inside = ratio <= thr if self.inclusive else ratio < thr
        s["delta"] += (inside & ok).sum(dim=1).to(s["delta"].dtype)

    def _compute(self, s: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {"abs_err": _WeightedMean.mean(s, "abs", self.average),
               "rel_err": _WeightedMean.mean(s, "rel", self.average)}
        for key, cnt in zip(self.keys[2:], s["delta"]):
            out[key] = cnt / s["n"].clamp(min=1) * 100
        return out


class AbsErrMeter(Meter):
    """``abs_err`` = mean |p − g| over valid pixels, per batch then batch-weighted (official Taskonomy
    depth/keypoint/edge errors; ``average="pooled"`` pools pixels)."""

    keys = ("abs_err",)

    def __init__(
        self,
        task: str,
        *,
        dataset: str = "taskonomy",
        average: Average = "batch",
        raw_validity: bool = False,
        pred_resize: ResizeMode = "nearest",
    ) -> None:
        super().__init__(task, pred_resize=pred_resize)
        self.dataset = dataset
        self.average: Average = average
        self.raw_validity = raw_validity

    def _init_state(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        return _WeightedMean.zeros(["abs"], pred.device)

    def _update(self, s: dict[str, Tensor], pred: Tensor, target: Tensor, batch: Mapping[str, Tensor]) -> None:
        valid = _dense_valid(self, target, batch, self.dataset, self.raw_validity)
        err = torch.where(valid, (pred.float() - target.float()).abs(), 0.0)
        _WeightedMean.add(s, target.shape[0], valid.sum(), {"abs": err.sum()})

    def _compute(self, s: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"abs_err": _WeightedMean.mean(s, "abs", self.average)}
