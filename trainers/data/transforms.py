"""Joint geometric augmentation of an image and all its dense labels (torchvision.transforms.v2).

Why v2 + tv_tensors: one transform call draws its random parameters once and applies them to every input,
dispatching per type. The image is a ``tv_tensors.Image`` (resized bilinear), every label a
``tv_tensors.Mask`` (resized nearest, never blended) and normals a ``NormalMap`` (a Mask whose x channel
changes sign under a horizontal flip). So the image and every label always see the same scale, crop and flip.

Padding: rather than one fill value per *type*, the pipeline carries an extra all-ones Mask; pixels where it is
0 after the transform came from padding, and each label gets its own pad value there (seg 255, depth 0, ...).
This keeps the per-label ignore values independent of how many labels share a type.

Randomness comes from torch's global generator (as every v2 transform), so a DataLoader worker's seed fixes it.

The official AdapMTL/DiSparse pipeline (OpenCV): scale s = U[0.5, 1.5) with new size int(h*s) x int(w*s)
(image bilinear, labels nearest), flip with p 0.5, then *centred* zero padding up to the crop size and a
random crop. ``official_train_transform`` reproduces that order; torchvision's ``RandomCrop(pad_if_needed)``
would instead pad ``diff`` on *both* sides (a random placement), so the centred pad is a separate step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

from trainers.data.labels import LabelSpec

__all__ = ["JointTransform", "LabelSpec", "NormalMap", "flip_only_transform", "official_train_transform",
           "resize_pair", "resize_transform"]

_INSIDE = "__inside__"


class NormalMap(tv_tensors.Mask):
    """A dense 3-channel surface-normal label: nearest resize like a Mask; x negated on horizontal flip."""


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


class RandomScale(v2.Transform):
    """Scale by s ~ U[lo, hi) to (int(h*s), int(w*s)), like the official loaders' ``__scale__``.

    ``antialias=False`` matches OpenCV's plain bilinear resize used by the official code.
    """

    def __init__(self, scale: tuple[float, float] = (0.5, 1.5), antialias: bool = False) -> None:
        super().__init__()
        lo, hi = scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale range must satisfy 0 < lo <= hi, got {scale}")
        self.scale = (float(lo), float(hi))
        self.antialias = antialias

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        lo, hi = self.scale
        s = lo + (hi - lo) * float(torch.rand(()))
        return {"size": [max(1, int(h * s)), max(1, int(w * s))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(
            F.resize,
            inpt,
            size=params["size"],
            interpolation=v2.InterpolationMode.BILINEAR,
            antialias=self.antialias,
        )


class CenterPadTo(v2.Transform):
    """Pad with zeros to at least ``size``, the original content centred (offset = diff // 2 top/left)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__()
        self.size = _size_pair(size)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        th, tw = self.size
        dh, dw = max(th - h, 0), max(tw - w, 0)
        top, left = dh // 2, dw // 2
        return {"padding": [left, top, dw - left, dh - top], "needed": dh > 0 or dw > 0}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["needed"]:
            return inpt
        return self._call_kernel(F.pad, inpt, padding=params["padding"], fill=0, padding_mode="constant")


class RandomHorizontalFlipNormals(v2.Transform):
    """Horizontal flip with probability p; ``NormalMap`` inputs get their x channel negated when asked.

    A mirrored scene has mirrored surface orientations, so the physically right label negates n_x (the
    Taskonomy loader and the paper do; the NYUv2 official loader does not: ``negate_normal_x=False``).
    """

    def __init__(self, p: float = 0.5, negate_normal_x: bool = True) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p
        self.negate_normal_x = negate_normal_x

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"flip": bool(torch.rand(()) < self.p)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["flip"]:
            return inpt
        out = self._call_kernel(F.horizontal_flip, inpt)
        if self.negate_normal_x and isinstance(out, NormalMap):
            plain = out.as_subclass(torch.Tensor).clone()
            plain[0] = -plain[0]
            out = tv_tensors.wrap(plain, like=out)
        return out


class JointTransform:
    """Apply one v2 pipeline to an image and a dict of dense labels; returns the padded-pixel mask too.

    ``image``: float ``[C, H, W]`` (not yet normalised, so padding with 0 is "0 before mean subtraction", as
    the official code). ``labels``: ``{key: [C, H, W] tensor}``. Returns ``(image, labels, inside)`` where
    ``inside`` is bool ``[1, H', W']``, False on pixels that came from padding.
    """

    def __init__(self, pipeline: Callable[[Any], Any]) -> None:
        self.pipeline = pipeline

    def __call__(
        self, image: torch.Tensor, labels: Mapping[str, torch.Tensor], specs: Mapping[str, LabelSpec]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        h, w = image.shape[-2:]
        sample: dict[str, Any] = {"image": tv_tensors.Image(image)}
        for key, value in labels.items():
            if tuple(value.shape[-2:]) != (h, w):
                raise ValueError(f"label {key!r} has size {tuple(value.shape[-2:])}, image has {(h, w)}")
            spec = specs.get(key, LabelSpec())
            sample[key] = NormalMap(value) if spec.normal else tv_tensors.Mask(value)
        sample[_INSIDE] = tv_tensors.Mask(torch.ones((1, h, w), dtype=torch.uint8))
        out = self.pipeline(sample)
        inside = out.pop(_INSIDE).as_subclass(torch.Tensor).bool()
        new_image = out.pop("image").as_subclass(torch.Tensor)
        new_labels: dict[str, torch.Tensor] = {}
        for key, value in out.items():
            plain = value.as_subclass(torch.Tensor)
            pad_value = specs.get(key, LabelSpec()).pad_value
            if not bool(inside.all()):
                plain = torch.where(inside, plain, torch.as_tensor(pad_value, dtype=plain.dtype))
            new_labels[key] = plain.contiguous()
        return new_image.contiguous(), new_labels, inside


def official_train_transform(
    crop_size: int | Sequence[int],
    *,
    scale: tuple[float, float] = (0.5, 1.5),
    flip_p: float = 0.5,
    negate_normal_x: bool = True,
) -> JointTransform:
    """Random scale -> horizontal flip -> centred pad to the crop size -> random crop (official order)."""
    crop = _size_pair(crop_size)
    return JointTransform(
        v2.Compose(
            [
                RandomScale(scale),
                RandomHorizontalFlipNormals(flip_p, negate_normal_x=negate_normal_x),
                CenterPadTo(crop),
                v2.RandomCrop(crop),
            ]
        )
    )


def flip_only_transform(flip_p: float = 0.5, negate_normal_x: bool = True) -> JointTransform:
    """Horizontal flip only (the synthetic dataset uses its torch-only twin, ``trainers.data.flip``)."""
    return JointTransform(RandomHorizontalFlipNormals(flip_p, negate_normal_x=negate_normal_x))


def resize_transform(size: int | Sequence[int], *, antialias: bool = False) -> JointTransform:
    """Deterministic resize to ``size`` (image bilinear, labels nearest), as the official test-time path."""
    return JointTransform(v2.Resize(_size_pair(size), antialias=antialias))


def resize_pair(
    image: torch.Tensor,
    labels: Mapping[str, torch.Tensor],
    size: Sequence[int],
    *,
    image_mode: str = "bilinear",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Resize an image (``image_mode``) and labels (nearest) to ``size`` without any randomness."""
    size = list(_size_pair(size))
    if tuple(image.shape[-2:]) == tuple(size):
        return image, dict(labels)
    mode = v2.InterpolationMode.NEAREST if image_mode == "nearest" else v2.InterpolationMode.BILINEAR
    new_image = F.resize(tv_tensors.Image(image), size, interpolation=mode, antialias=False)
    new_labels = {k: F.resize(tv_tensors.Mask(v), size).as_subclass(torch.Tensor) for k, v in labels.items()}
    return new_image.as_subclass(torch.Tensor), new_labels
