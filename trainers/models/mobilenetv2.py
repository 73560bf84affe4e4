"""MobileNetV2 backbone as used by AdapMTL (METHODS_SPEC §6.3).

The official model is the standard width-1.0 MobileNetV2 (tonylins variant) with the average pool and the
classifier removed, so it returns the 1280-channel feature map at output stride 32 (321 -> 11, 224 -> 7).
torchvision's ``InvertedResidual`` and ``Conv2dNormActivation`` build exactly the same layers (expansion 1x1,
depthwise 3x3, linear 1x1 projection; residual when stride 1 and in == out), so they are reused here rather
than rewritten (restated line for line in ``trainers.models.blocks``, so that importing the model does not
import torchvision). Every convolution is a plain ``nn.Conv2d`` so pruning methods can reparameterise its
``weight`` with ``torch.nn.utils.parametrize``.

Width semantics (``width``): channel counts follow torchvision's ``width_mult`` (``make_divisible(c * w, 8)``,
never below 8). The final 1x1 conv has ``make_divisible(1280 * w, 8)`` channels at *every* width. At
``w >= 1`` this equals the official/torchvision rule ``1280 * max(1, w)``; below 1 it deliberately scales the
last layer too (the official rule keeps 1280), because the ASPP heads' first 3x3 conv reads this map and a
fixed 1280 would make the heads of a CPU-sized model as heavy as the paper's. ``w = 1`` is the paper model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainers.models.blocks import Conv2dNormActivation, InvertedResidual

__all__ = ["INVERTED_RESIDUAL_SETTING", "MobileNetV2Backbone", "make_divisible"]

#: (expansion t, output channels c, repeats n, first stride s) of the 17 inverted-residual blocks.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without losing more than 10%.

    The usual MobileNet channel rule (TF-slim / torchvision); identity on the width-1.0 channel counts.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 feature extractor: stem, 17 inverted residuals, final 1x1 conv + BN + ReLU6.

    Output stride 32, ``out_channels`` channels (1280 at width 1). 52 convolutions, all without bias.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        in_ch = make_divisible(STEM_CHANNELS * width)
        layers: list[nn.Module] = [
            Conv2dNormActivation(3, in_ch, kernel_size=3, stride=2, activation_layer=nn.ReLU6)
        ]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_ch = make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, expand_ratio=t))
                in_ch = out_ch
        self.out_channels = make_divisible(LAST_CHANNELS * width)
        layers.append(
            Conv2dNormActivation(in_ch, self.out_channels, kernel_size=1, activation_layer=nn.ReLU6)
        )
        self.features = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: conv weight ~ N(0, 2/n) with n = k*k*out_channels (depthwise too); BN 1/0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
