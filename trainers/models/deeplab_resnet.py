"""DeepLab-ResNet34 backbone (METHODS_SPEC §6.1; the same network in AdapMTL, DiSparse and AdaShare).

A dilated ResNet34 with output stride 8: the last two stages keep stride 1 and dilate their 3x3 convs by 2
and 4 instead (321 -> 161 -> 81 -> 81 -> 41 -> 41 -> 41; 224 -> 29). torchvision's ``BasicBlock`` refuses
``dilation > 1``, so a small block is defined here; torchvision's ``conv3x3`` / ``conv1x1`` helpers already
produce the official convolutions (bias-free, padding = dilation) and are reused (restated in
``trainers.models.blocks``, so that importing the model does not import torchvision).

Differences from the official module layout are cosmetic: the official code keeps blocks and downsample
convs in two parallel lists and adds the residual outside the block; here each block owns its shortcut.
The forward computation, the set of convolutions (36 at width 1) and their shapes are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainers.models.blocks import conv1x1, conv3x3
from trainers.models.mobilenetv2 import make_divisible

__all__ = ["DeepLabResNet", "DilatedBasicBlock", "scale_channels"]

STEM_CHANNELS = 64
STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_STRIDES = (1, 2, 1, 1)
STAGE_DILATIONS = (1, 1, 2, 4)


def scale_channels(channels: int, width: float) -> int:
    """Scale a channel count by ``width``: a multiple of 8 when that is at least 8, else at least 1.

    Width 1 is the identity on ResNet's channel counts; very small widths (e.g. 1/32 for unit tests) still
    give distinct, tiny layers instead of all collapsing to 8.
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    value = channels * width
    if value >= 8:
        return make_divisible(value, 8)
    return max(1, round(value))


class DilatedBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU; both convs use the stage dilation."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride=stride, dilation=dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DeepLabResNet(nn.Module):
    """Dilated ResNet (BasicBlocks) with output stride 8; ResNet34 with the default arguments.

    Init as the official code: every conv weight ~ N(0, 0.01^2), BN weight 1 / bias 0.
    """

    def __init__(
        self,
        width: float = 1.0,
        blocks: Sequence[int] = STAGE_BLOCKS,
        strides: Sequence[int] = STAGE_STRIDES,
        dilations: Sequence[int] = STAGE_DILATIONS,
    ) -> None:
        super().__init__()
        stem = scale_channels(STEM_CHANNELS, width)
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)

        inplanes = stem
        stages = []
        for base, n, stride, dilation in zip(STAGE_CHANNELS, blocks, strides, dilations, strict=True):
            planes = scale_channels(base, width)
            stages.append(self._make_stage(inplanes, planes, n, stride, dilation))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = inplanes
        self.reset_parameters()

    @staticmethod
    def _make_stage(inplanes: int, planes: int, n: int, stride: int, dilation: int) -> nn.Sequential:
        # Official condition: a projection shortcut whenever the block strides, changes width, or the stage
        # is dilated (stages 3-4 get one even though their shapes already match).
        downsample = None
        if stride != 1 or inplanes != planes or dilation != 1:
            downsample = nn.Sequential(conv1x1(inplanes, planes, stride=stride), nn.BatchNorm2d(planes))
        layers = [DilatedBasicBlock(inplanes, planes, stride, dilation, downsample)]
        layers += [DilatedBasicBlock(planes, planes, 1, dilation) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)
