"""ASPP head, one per task (METHODS_SPEC §6.2).

Four parallel branches with dilation = padding in {6, 12, 18, 24}; each is
3x3 conv (in -> H) -> ReLU -> Dropout -> 1x1 (H -> H) -> ReLU -> Dropout -> 1x1 (H -> C), all convs with bias.
The head output is the *sum* of the branches (not a concatenation), there is no BatchNorm and no upsampling:
predictions stay at backbone resolution and the losses/metrics resize labels (official behaviour).
PyTorch's default Conv2d init is kept, as the official code never overrides it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainers.models.dropout import Dropout

__all__ = ["ASPP_RATES", "ASPPBranch", "ASPPHead"]

ASPP_RATES: tuple[int, ...] = (6, 12, 18, 24)


class ASPPBranch(nn.Module):
    """One atrous branch: dilated 3x3 -> 1x1 -> 1x1 classifier (three biased convs)."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, rate: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=rate, dilation=rate)
        self.conv2 = nn.Conv2d(hidden_channels, hidden_channels, kernel_size=1)
        self.conv3 = nn.Conv2d(hidden_channels, out_channels, kernel_size=1)
        # Out-of-place ReLU (official: in-place): same numbers, and safe for forward hooks that keep outputs.
        self.relu = nn.ReLU()
        self.dropout = Dropout(dropout)  # nn.Dropout's masks, drawn faster on the CPU (trainers.models.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.relu(self.conv1(x)))
        x = self.dropout(self.relu(self.conv2(x)))
        return self.conv3(x)


class ASPPHead(nn.Module):
    """Sum of ``len(rates)`` ASPP branches (12 convs with the default four rates)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 1024,
        dropout: float = 0.5,
        rates: Sequence[int] = ASPP_RATES,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or hidden_channels < 1:
            raise ValueError("ASPPHead channel counts must be >= 1")
        self.branches = nn.ModuleList(
            ASPPBranch(in_channels, hidden_channels, out_channels, r, dropout) for r in rates
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out
