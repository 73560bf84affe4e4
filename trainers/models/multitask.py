"""The multitask model (shared backbone + one ASPP head per task) and ``build_model``.

Mirrors the official ``MTSeqModel`` with the all-shared layout (METHODS_SPEC §1.1): ``f = backbone(x)``,
``out[t] = heads[t](f)``; outputs stay at backbone resolution. One code path serves every width: ``width=1``
is the paper model, smaller widths are the CPU-sized variants (DESIGN §3.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from trainers.models.aspp import ASPPHead
from trainers.models.deeplab_resnet import DeepLabResNet
from trainers.models.mobilenetv2 import MobileNetV2Backbone

__all__ = ["ARCHS", "BACKBONES", "FULL_HEAD_CHANNELS", "MultiTaskModel", "build_model"]

FULL_HEAD_CHANNELS = 1024

#: name -> backbone constructor taking ``width``; each backbone exposes ``out_channels``.
BACKBONES: dict[str, Callable[[float], nn.Module]] = {
    "resnet34": lambda width: DeepLabResNet(width=width),
    "mobilenetv2": lambda width: MobileNetV2Backbone(width=width),
}
ARCHS: tuple[str, ...] = tuple(BACKBONES)


class MultiTaskModel(nn.Module):
    """Shared backbone feeding one head per task; ``forward`` returns ``{task: prediction}``."""

    def __init__(self, arch: str, backbone: nn.Module, heads: Mapping[str, nn.Module], feature_channels: int):
        super().__init__()
        self.arch = arch
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads))
        self.task_names: tuple[str, ...] = tuple(heads)
        self.feature_channels = feature_channels

    @property
    def task_channels(self) -> dict[str, int]:
        return {t: int(h.out_channels) for t, h in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        return {task: head(features) for task, head in self.heads.items()}


def build_model(
    arch: str,
    task_channels: Mapping[str, int],
    *,
    width: float = 1.0,
    head_channels: int | None = None,
    dropout: float = 0.5,
) -> MultiTaskModel:
    """Build ``arch`` with one ASPP head per task.

    ``width`` scales the backbone channels and, unless ``head_channels`` is given, the heads' hidden width
    (``round(1024 * width)``). Build under ``with torch.device("meta"):`` to inspect the full-size model
    without allocating it.
    """
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if not task_channels:
        raise ValueError("task_channels must name at least one task")
    for task, channels in task_channels.items():
        if not task or "." in task or "/" in task:
            raise ValueError(f"invalid task name {task!r} (no '.' or '/')")
        if int(channels) < 1:
            raise ValueError(f"task {task!r} needs >= 1 output channel, got {channels}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    hidden = max(1, round(FULL_HEAD_CHANNELS * width)) if head_channels is None else int(head_channels)
    if hidden < 1:
        raise ValueError(f"head_channels must be >= 1, got {head_channels}")

    backbone = BACKBONES[arch](width)
    feat = int(backbone.out_channels)
    heads = {
        task: ASPPHead(feat, int(channels), hidden_channels=hidden, dropout=dropout)
        for task, channels in task_channels.items()
    }
    return MultiTaskModel(arch, backbone, heads, feat)
