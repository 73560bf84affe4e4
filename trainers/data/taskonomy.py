"""``taskonomy``: Tiny-Taskonomy in the AdaShare-style layout read by the official AdapMTL loader.

Layout (METHODS_SPEC §5.2)::

    root/taskonomy.json          {"train": [[rgb, segment_semantic, normal, depth_zbuffer, keypoints2d,
                                  edge_texture], ...], "test": [...], "test_small": [...]}
    root/train/<paths of train>  root/test/<paths of test and test_small>
    root/semseg_prior_factor.npy per-class cross-entropy weights (exposed as ``class_weights``)

Encodings (as the official loader; everything first resized to 256x256 with nearest, the RGB included):
- rgb: BGR minus the BGR mean (no /255);
- segment_semantic: original 0 -> 1, then -1, so 17 classes 0-16 (original 0 and 1 both become 0);
- normal: /255 then [0, 1] -> [-1, 1] (PNG channel order); ``normal_mask`` = the depth mask;
- depth_zbuffer: log(1 + d) / log(2^16); ``depth_zbuffer_mask`` = d < 64500 (on the original 16-bit values);
- keypoints2d: /2^16, clipped to [0, 0.005], rescaled to [-1, 1]; edge_texture: /2^16, [0, 0.08] -> [-1, 1].
Train: scale U[0.5, 1.5), flip p=0.5 (normal channel 0 negated), centred pad + random crop 224. Test:
resize 256 -> 224 (image bilinear, labels nearest) as AdapMTL (``eval_size="full"`` keeps 256, DiSparse).

Padded pixels: seg 255 and every float label 255 (the official ignore value, so a loss using the official
``gt != 255`` rule still works), and every mask False (``keypoints2d_mask``/``edge_texture_mask`` exist
only to mark padding). The official loader also returns a prior-weighted ``seg_mask`` that its loss
ignores; it is not returned here (segmentation uses 255 = ignore). ``resolution`` replaces 224; the
256 base then scales to round(256 * resolution / 224).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trainers.data.errors import DatasetError, check_options, read_npy, read_png, require_dir, require_file
from trainers.data.labels import LabelSpec
from trainers.data.nyuv2 import carve_val, check_tasks, image_to_tensor, normalise_image, read_index


def _transforms() -> Any:
    """``trainers.data.transforms`` (torchvision v2), imported on first use: a sweep on other datasets never
    pays for importing torchvision (see ``trainers.data.flip``)."""
    from trainers.data import transforms

    return transforms

JSON_NAME = "taskonomy.json"
PRIOR_NAME = "semseg_prior_factor.npy"
GROUP_ORDER = ("rgb", "segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture")
NUM_CLASSES = 17
IGNORE = 255
OFFICIAL_BASE, OFFICIAL_CROP = 256, 224
DEPTH_MAX_VALID = 64500
TASK_CHANNELS: dict[str, int] = {
    "segment_semantic": NUM_CLASSES,
    "normal": 3,
    "depth_zbuffer": 1,
    "keypoints2d": 1,
    "edge_texture": 1,
}
SPLITS = ("train", "val", "test", "test_small")


def _rescale(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip to [lo, hi] and map linearly to [-1, 1] (the official ``rescale_image``)."""
    return (np.clip(x, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0


def _hw1(x: np.ndarray) -> np.ndarray:
    return x[..., 0] if x.ndim == 3 else x


class Taskonomy(Dataset):
    """Tiny-Taskonomy (AdaShare-style layout) returning the INTERNAL_API sample dict."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        tasks: Sequence[str] | None = None,
        resolution: int | None = None,
        augment: bool | None = None,
        eval_size: str | int = "224",
        image_norm: str = "official",
        val_fraction: float = 0.1,
        val_seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for taskonomy; expected one of {SPLITS}")
        if str(eval_size) not in ("224", "full"):
            raise ValueError(f"eval_size must be 224 or 'full', got {eval_size!r}")
        if image_norm not in ("official", "imagenet"):
            raise ValueError(f"image_norm must be 'official' or 'imagenet', got {image_norm!r}")
        self.tasks = check_tasks(tasks, TASK_CHANNELS, "taskonomy")
        self.root = require_dir(root, "taskonomy root")
        key = "train" if split in ("train", "val") else split
        groups = read_index(self.root, JSON_NAME, [key], len(GROUP_ORDER))[key]
        if split in ("train", "val"):
            groups = [groups[i] for i in carve_val(len(groups), split, val_fraction, val_seed)]
        self.data_dir = require_dir(
            self.root / ("train" if key == "train" else "test"), "taskonomy split dir"
        )
        for group in groups:
            for rel in group:
                require_file(self.data_dir / rel, "taskonomy sample file listed in " + JSON_NAME)
        prior_path = require_file(self.root / PRIOR_NAME, "semantic prior factor")
        prior = np.asarray(read_npy(prior_path), dtype=np.float32).reshape(-1)
        if prior.size < NUM_CLASSES:
            raise DatasetError(prior_path, f"needs >= {NUM_CLASSES} class weights, has {prior.size}")
        self.class_weights = torch.from_numpy(prior[:NUM_CLASSES].copy())
        self.groups = groups
        self.split = split
        self.crop = int(resolution or OFFICIAL_CROP)
        self.base = (
            OFFICIAL_BASE if self.crop == OFFICIAL_CROP else max(1, round(OFFICIAL_BASE * self.crop / 224))
        )
        self.eval_full = str(eval_size) == "full"
        self.image_norm = image_norm
        self.augment = (split == "train") if augment is None else bool(augment)
        self._train_tf = _transforms().official_train_transform(self.crop, negate_normal_x=True)
        self.num_classes = NUM_CLASSES

    def __len__(self) -> int:
        return len(self.groups)

    def _decode(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Read one group and encode it as the official loader does, before the base resize."""
        paths = [self.data_dir / rel for rel in self.groups[i]]
        rgb = read_png(paths[0], "RGB")
        seg = _hw1(read_png(paths[1])).astype(np.int64)
        nrm = read_png(paths[2], "RGB").astype(np.float32) / 255.0
        dep = _hw1(read_png(paths[3])).astype(np.float32)
        kp = _hw1(read_png(paths[4])).astype(np.float32) / 2**16
        edge = _hw1(read_png(paths[5])).astype(np.float32) / 2**16
        h, w = rgb.shape[:2]
        for arr, p in zip((seg, nrm, dep, kp, edge), paths[1:]):
            if arr.shape[:2] != (h, w):
                raise DatasetError(p, f"size {arr.shape[:2]} differs from the rgb's {(h, w)}")
        seg = np.where(seg == 0, 1, seg) - 1
        seg = np.where(seg >= NUM_CLASSES, IGNORE, seg)  # ids the prior cannot weight: ignore
        depth_mask = dep < DEPTH_MAX_VALID
        t = torch.from_numpy
        labels = {
            "segment_semantic": t(seg)[None],
            "normal": t(np.ascontiguousarray(nrm * 2.0 - 1.0)).permute(2, 0, 1),
            "depth_zbuffer": t(np.log1p(dep) / np.log(2.0**16)).float()[None],
            "depth_mask": t(depth_mask.astype(np.uint8))[None],
            "keypoints2d": t(_rescale(kp, 0.0, 0.005)).float()[None],
            "edge_texture": t(_rescale(edge, 0.0, 0.08)).float()[None],
        }
        return image_to_tensor(rgb), labels

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, labels = self._decode(i)
        image, labels = _transforms().resize_pair(image, labels, (self.base, self.base), image_mode="nearest")
        specs = {k: LabelSpec(IGNORE) for k in labels}
        specs["normal"] = LabelSpec(IGNORE, normal=True)
        specs["depth_mask"] = LabelSpec(0)
        inside = torch.ones((1, *image.shape[-2:]), dtype=torch.bool)
        if self.augment:
            image, labels, inside = self._train_tf(image, labels, specs)
        elif not self.eval_full:
            image, labels = _transforms().resize_pair(image, labels, (self.crop, self.crop))
            inside = torch.ones((1, self.crop, self.crop), dtype=torch.bool)
        out: dict[str, torch.Tensor] = {"image": normalise_image(image, self.image_norm).contiguous()}
        depth_mask = labels["depth_mask"].bool() & inside
        if "segment_semantic" in self.tasks:
            out["segment_semantic"] = labels["segment_semantic"][0].long()
        if "normal" in self.tasks:
            out["normal"] = labels["normal"].float()
            out["normal_mask"] = depth_mask.clone()
        if "depth_zbuffer" in self.tasks:
            out["depth_zbuffer"] = labels["depth_zbuffer"].float()
            out["depth_zbuffer_mask"] = depth_mask
        for key in ("keypoints2d", "edge_texture"):
            if key in self.tasks:
                out[key] = labels[key].float()
                out[f"{key}_mask"] = inside.clone()
        return out


def build(
    split: str,
    *,
    tasks: Sequence[str] | None = None,
    root: str | Path | None = None,
    resolution: int | None = None,
    augment: bool | None = None,
    seed: int = 0,
    **opts: Any,
) -> Taskonomy:
    """Registry entry point. ``root`` is required; options: eval_size, image_norm, val_fraction, val_seed."""
    allowed = {"eval_size", "image_norm", "val_fraction", "val_seed"}
    check_options("taskonomy", opts, allowed)
    if root is None:
        raise DatasetError("<none>", "taskonomy needs dataset.root (the Tiny-Taskonomy directory)")
    return Taskonomy(root, split, tasks=tasks, resolution=resolution, augment=augment, **opts)
