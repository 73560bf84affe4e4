"""Horizontal flip of an image and its dense labels in plain torch: the synthetic scenes' augmentation.

Why not ``flip_only_transform`` (torchvision v2): per sample it wraps every tensor in a ``tv_tensors`` subclass,
dispatches the flip through v2's kernel registry and builds a padding mask a flip never needs — about half of a
synthetic-scenes sample's load time — and importing torchvision pulls in ``torch._dynamo`` (~1.8 s per
process). This is the same draw and the same values: one ``torch.rand(())`` from the global generator per
sample compared with ``p``, then ``flip(-1)`` of the image and every label, and the x channel of normal maps
negated when asked; tests/test_flip.py checks it bit for bit against ``flip_only_transform``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from trainers.data.labels import LabelSpec

__all__ = ["HorizontalFlip"]


class HorizontalFlip:
    """``(image, labels, specs) -> (image, labels, inside)``: the ``JointTransform`` contract, flip only."""

    def __init__(self, p: float = 0.5, negate_normal_x: bool = True) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p
        self.negate_normal_x = negate_normal_x

    def __call__(
        self, image: torch.Tensor, labels: Mapping[str, torch.Tensor], specs: Mapping[str, LabelSpec]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        h, w = image.shape[-2:]
        for key, value in labels.items():
            if tuple(value.shape[-2:]) != (h, w):
                raise ValueError(f"label {key!r} has size {tuple(value.shape[-2:])}, image has {(h, w)}")
        inside = torch.ones((1, h, w), dtype=torch.bool)  # a flip pads nothing
        if not bool(torch.rand(()) < self.p):
            return image.contiguous(), {k: v.contiguous() for k, v in labels.items()}, inside
        out: dict[str, torch.Tensor] = {}
        for key, value in labels.items():
            flipped = value.flip(-1)
            if self.negate_normal_x and specs.get(key, LabelSpec()).normal:
                flipped[0] = -flipped[0]
            out[key] = flipped
        return image.flip(-1), out, inside
