"""The few torchvision building blocks the models use, restated so that importing a model is torch-only.

Why: ``import torchvision`` imports ``torchvision.ops``, which imports ``torch._dynamo`` — ~1.8 s of a
Ray trial actor's ~8 s start on the 2-core machine (benchmarks/RESULTS.md, Q3 round 3), paid by every
trial process and the sweep driver, for four small classes and functions. These are line-for-line the
torchvision 0.29 definitions (BSD-3-Clause, © Soumith Chintala and contributors): the same layers in the
same order with the same attribute names, so parameters are created (and randomly initialised) in the same
order and state dicts have the same keys; tests/test_model_blocks.py compares them with torchvision's.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Conv2dNormActivation", "InvertedResidual", "conv1x1", "conv3x3"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding (``torchvision.models.resnet.conv3x3``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution (``torchvision.models.resnet.conv1x1``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class Conv2dNormActivation(nn.Sequential):
    """Conv2d → BatchNorm2d → activation (``torchvision.ops.misc.Conv2dNormActivation``, 2-d ints only)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, groups: int = 1,
                 norm_layer: type[nn.Module] | None = nn.BatchNorm2d,
                 activation_layer: type[nn.Module] | None = nn.ReLU, dilation: int = 1,
                 inplace: bool | None = True, bias: bool | None = None) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                             dilation=dilation, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            params = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**params))
        super().__init__(*layers)
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual (``torchvision.models.mobilenetv2.InvertedResidual``)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int,
                 norm_layer: type[nn.Module] | None = None) -> None:
        super().__init__()
        self.stride = stride
        if stride not in [1, 2]:
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = self.stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:  # pw
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=nn.ReLU6))
        layers.extend([
            # dw
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, norm_layer=norm_layer,
                                 activation_layer=nn.ReLU6),
            # pw-linear
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ])
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)
