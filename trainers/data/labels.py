"""How a dense label is treated by the joint augmentations (shared by the torchvision and the plain paths).

Kept apart from ``trainers.data.transforms`` so that datasets which only flip (synthetic scenes) need not
import torchvision (see ``trainers.data.flip``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LabelSpec"]


@dataclass(frozen=True)
class LabelSpec:
    """How one dense label is treated: the value written on padded pixels, and whether it is a normal map."""

    pad_value: float = 0.0
    normal: bool = False
