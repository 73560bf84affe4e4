"""``nyuv2``: the AdaShare-formatted NYUv2 layout read by the official AdapMTL / DiSparse loaders.

Layout (METHODS_SPEC §5.1)::

    root/nyu_v2_3task.json   {"train": [[img, seg, normal, depth], ...], "test": [...]}  (paths rel. to root)
    root/img/NNNN.png        8-bit RGB
    root/seg/NNNN.png        8-bit, class ids 0-39, 255 = ignore
    root/normal_mask/NNNN.png  8-bit 3-channel, (n + 1) * 127.5, invalid pixels = (255, 255, 255)
    root/depth/NNNN.npy      float32 metres, valid where > 3e-5

What follows the official code (so numbers are comparable with the paper):
- image: BGR channel order minus the BGR mean (104.00698793, 116.66876762, 122.67891434), no /255
  (``image_norm="official"``, the default; ``"imagenet"`` gives RGB/255 with ImageNet mean/std);
- train augmentation: scale s ~ U[0.5, 1.5) to int(h*s) x int(w*s) (image bilinear, labels nearest),
  horizontal flip p=0.5, centred padding up to 321x321 then a random 321x321 crop (pad: image 0 before mean
  subtraction, seg 255, normal invalid, depth 0);
- test: resize to 321x321 (image bilinear, labels nearest), as AdapMTL (``eval_size="full"`` keeps the
  stored size, as DiSparse/AdaShare).

Normals (``normals=``):
- ``"official_raw"`` (default): the official target and metric, i.e. the raw 0-255 encoding in OpenCV's BGR
  order, L2-normalised, never negated on flip (the official loss and metric normalise the raw vector). Every
  angle the paper's Tables 1-2 print is measured this way: the raw encodings all lie in the positive octant,
  so the same geometric error gives smaller angles than on decoded normals (8.8° vs 16.9° mean on sample
  normals) — comparing numbers across conventions is meaningless;
- ``"decoded"`` (the geometric definition; this project's earlier default): unit vectors n = enc/127.5 - 1
  in the PNG's RGB channel order, renormalised; channel 0 is the horizontal component (positive = facing
  image-right: on the AdaShare samples left-hand walls have n_0 > 0), negated on horizontal flip.
Invalid normal pixels are zero vectors with ``normal_mask`` False.

Masks: ``normal_mask`` = not all three channels 255; ``depth_zbuffer_mask`` = depth > 3e-5; padded pixels
are False in both.

``resolution`` (CPU-scale runs) replaces 321: every image is first resized by resolution/321 so that the
crop still covers the same fraction of the scene as the official 321 crop of a 480x640 image.
``val``: a deterministic held-out fraction (``val_fraction``, default 0.1) of the official train list,
chosen by ``val_seed`` (not the trial seed, so every trial validates on the same images), never augmented.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trainers.data.errors import (
    DatasetError,
    check_options,
    load_json,
    read_npy,
    read_png,
    require_dir,
    require_file,
)
from trainers.data.labels import LabelSpec


def _transforms() -> Any:
    """``trainers.data.transforms`` (torchvision v2), imported on first use: a sweep on other datasets never
    pays for importing torchvision (see ``trainers.data.flip``)."""
    from trainers.data import transforms

    return transforms

JSON_NAME = "nyu_v2_3task.json"
NUM_CLASSES = 40
IGNORE_INDEX = 255
OFFICIAL_CROP = 321
DEPTH_MIN_VALID = 3e-5
MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
TASK_CHANNELS: dict[str, int] = {"segment_semantic": NUM_CLASSES, "normal": 3, "depth_zbuffer": 1}
SPLITS = ("train", "val", "test")


def check_tasks(tasks: Sequence[str] | None, available: dict[str, int], dataset: str) -> tuple[str, ...]:
    """The requested tasks (all when None); an unknown name is a ValueError naming it."""
    if tasks is None:
        return tuple(available)
    tasks = tuple(tasks)
    for t in tasks:
        if t not in available:
            raise ValueError(f"unknown task {t!r} for dataset {dataset}; available: {sorted(available)}")
    if not tasks:
        raise ValueError(f"no tasks requested for dataset {dataset}")
    return tasks


def carve_val(n: int, split: str, val_fraction: float, val_seed: int) -> list[int]:
    """Indices into the official train list for ``train`` or ``val`` (a fixed random held-out fraction)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n > 1:
        n_val = min(max(n_val, 1), n - 1)
    perm = np.random.default_rng(val_seed).permutation(n)
    held = set(perm[:n_val].tolist())
    if split == "val":
        return sorted(held)
    return [i for i in range(n) if i not in held]


def read_index(root: Path, json_name: str, keys: Sequence[str], width: int) -> dict[str, list[list[str]]]:
    """Load and validate the JSON index: each requested key a list of ``width``-long lists of paths."""
    info = load_json(root / json_name)
    path = root / json_name
    if not isinstance(info, dict):
        raise DatasetError(path, "index must be a JSON object with split lists")
    out: dict[str, list[list[str]]] = {}
    for key in keys:
        groups = info.get(key)
        if not isinstance(groups, list):
            raise DatasetError(path, f"index has no list under {key!r}")
        for i, g in enumerate(groups):
            if not (isinstance(g, list) and len(g) == width and all(isinstance(x, str) for x in g)):
                raise DatasetError(path, f"entry {key}[{i}] is not a list of {width} relative paths")
        out[key] = groups
    return out


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 (or HxW) uint8 -> float32 [3, H, W] in 0..255, RGB order."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, -1)
    return torch.from_numpy(np.ascontiguousarray(rgb[..., :3])).permute(2, 0, 1).float()


def normalise_image(img: torch.Tensor, image_norm: str) -> torch.Tensor:
    """float RGB [3, H, W] in 0..255 -> the network input (official: BGR minus the BGR mean, no /255)."""
    if image_norm == "official":
        return img.flip(0) - torch.tensor(MEAN_BGR, dtype=torch.float32).view(3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN_RGB).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD_RGB).view(3, 1, 1)
    return (img / 255.0 - mean) / std


def base_size(h: int, w: int, resolution: int, official: int) -> tuple[int, int]:
    """Size every sample is first resized to when ``resolution`` replaces the official crop size."""
    if resolution == official:
        return h, w
    r = resolution / official
    return max(1, int(round(h * r))), max(1, int(round(w * r)))


class NYUv2(Dataset):
    """NYUv2 (AdaShare layout) returning the INTERNAL_API sample dict."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        tasks: Sequence[str] | None = None,
        resolution: int | None = None,
        augment: bool | None = None,
        normals: str = "official_raw",
        eval_size: str | int = "321",
        image_norm: str = "official",
        val_fraction: float = 0.1,
        val_seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for nyuv2; expected one of {SPLITS}")
        if normals not in ("decoded", "official_raw"):
            raise ValueError(f"normals must be 'decoded' or 'official_raw', got {normals!r}")
        if str(eval_size) not in ("321", "full"):
            raise ValueError(f"eval_size must be 321 or 'full', got {eval_size!r}")
        if image_norm not in ("official", "imagenet"):
            raise ValueError(f"image_norm must be 'official' or 'imagenet', got {image_norm!r}")
        self.tasks = check_tasks(tasks, TASK_CHANNELS, "nyuv2")
        self.root = require_dir(root, "nyuv2 root")
        key = "test" if split == "test" else "train"
        groups = read_index(self.root, JSON_NAME, [key], 4)[key]
        if split != "test":
            groups = [groups[i] for i in carve_val(len(groups), split, val_fraction, val_seed)]
        for group in groups:
            for rel in group:
                require_file(self.root / rel, "nyuv2 sample file listed in " + JSON_NAME)
        self.groups = groups
        self.split = split
        self.crop = int(resolution or OFFICIAL_CROP)
        self.normals = normals
        self.eval_full = str(eval_size) == "full"
        self.image_norm = image_norm
        self.augment = (split == "train") if augment is None else bool(augment)
        self._train_tf = _transforms().official_train_transform(self.crop, negate_normal_x=normals == "decoded")
        self.num_classes = NUM_CLASSES

    def __len__(self) -> int:
        return len(self.groups)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        img_rel, seg_rel, nrm_rel, dep_rel = self.groups[i]
        img = read_png(self.root / img_rel, "RGB")
        seg = read_png(self.root / seg_rel)
        if seg.ndim == 3:
            seg = seg[..., 0]
        nrm = read_png(self.root / nrm_rel, "RGB")
        dep_path = self.root / dep_rel
        dep = read_npy(dep_path).astype(np.float32)
        if dep.ndim == 3:
            dep = dep[..., 0] if dep.shape[-1] == 1 else dep[0]
        h, w = img.shape[:2]
        for arr, rel in ((seg, seg_rel), (nrm, nrm_rel), (dep, dep_rel)):
            if arr.shape[:2] != (h, w):
                raise DatasetError(self.root / rel, f"size {arr.shape[:2]} differs from the image's {(h, w)}")
        return img, seg, nrm, dep

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img_np, seg_np, nrm_np, dep_np = self._load(i)
        image = image_to_tensor(img_np)
        raw = torch.from_numpy(np.ascontiguousarray(nrm_np)).permute(2, 0, 1).float()  # RGB order, 0..255
        valid = ~(raw == 255).all(0, keepdim=True)
        if self.normals == "decoded":
            vec = raw / 127.5 - 1.0
        else:
            vec = raw.flip(0)  # OpenCV's BGR order, as the official code reads it
        vec = torch.where(valid, vec / vec.norm(dim=0, keepdim=True).clamp_min(1e-6), torch.zeros(()))
        labels = {
            "segment_semantic": torch.from_numpy(seg_np.astype(np.int64))[None],
            "normal": vec,
            "normal_mask": valid.to(torch.uint8),
            "depth_zbuffer": torch.from_numpy(np.ascontiguousarray(dep_np))[None],
        }
        specs = {
            "segment_semantic": LabelSpec(IGNORE_INDEX),
            "normal": LabelSpec(0.0, normal=True),
            "normal_mask": LabelSpec(0),
            "depth_zbuffer": LabelSpec(0.0),
        }
        h, w = image.shape[-2:]
        bh, bw = base_size(h, w, self.crop, OFFICIAL_CROP)
        image, labels = _transforms().resize_pair(image, labels, (bh, bw))
        if self.augment:
            image, labels, _ = self._train_tf(image, labels, specs)
        elif not self.eval_full:
            image, labels = _transforms().resize_pair(image, labels, (self.crop, self.crop))
        return self._pack(image, labels)

    def _pack(self, image: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {"image": normalise_image(image, self.image_norm).contiguous()}
        if "segment_semantic" in self.tasks:
            out["segment_semantic"] = labels["segment_semantic"][0].long()
        if "normal" in self.tasks:
            out["normal"] = labels["normal"].float()
            out["normal_mask"] = labels["normal_mask"].bool()
        if "depth_zbuffer" in self.tasks:
            depth = labels["depth_zbuffer"].float()
            out["depth_zbuffer"] = depth
            out["depth_zbuffer_mask"] = depth > DEPTH_MIN_VALID
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
) -> NYUv2:
    """Registry entry point. ``root`` is required. ``seed`` does not change the data (augmentation draws from
    torch's generator, seeded per DataLoader worker). Options: normals, eval_size, image_norm,
    val_fraction, val_seed."""
    allowed = {"normals", "eval_size", "image_norm", "val_fraction", "val_seed"}
    check_options("nyuv2", opts, allowed)
    if root is None:
        raise DatasetError("<none>", "nyuv2 needs dataset.root (the AdaShare-formatted NYUv2 directory)")
    return NYUv2(root, split, tasks=tasks, resolution=resolution, augment=augment, **opts)
