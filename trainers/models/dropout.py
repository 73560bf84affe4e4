"""``nn.Dropout`` with the same masks drawn ~2.5× faster on CPUs where torch draws them element by element.

Why: at the benchmark's size (64², width 1/16, batch 8) the heads' 24 dropouts were ~18 % of a training
step on the 2-core AMD machine (benchmarks/RESULTS.md, Q8): torch's CPU dropout is ``noise =
empty_like(x).bernoulli_(1 − p); noise /= 1 − p; x · noise``, and where MKL's vectorised Bernoulli is not
used (it is not on this AMD EPYC build) ``bernoulli_`` draws one ``uniform_real_distribution<double>`` per
element through a per-element Bernoulli object: 12 ns/element. ``uniform_`` on a float64 tensor draws the
very same numbers from the same generator in the same order, 2.5× faster; ``u < 1 − p`` is then the same
mask, and ``x · (mask / (1 − p))`` the same values and the same gradient (a ``MulBackward`` by the same noise).

Because that equality is a property of the torch build and the CPU (an MKL-on-Intel ``bernoulli_`` draws
different numbers), it is not assumed: the first time a (numel, p) pair is seen, both are drawn from a copy
of the generator state and compared bit for bit (masks and the generator state after), and the fast path is
used only when they agree; otherwise, and off the CPU, this is ``nn.Dropout``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Dropout", "replicates_bernoulli"]

#: (numel, keep probability) → whether ``uniform_(float64) < keep`` reproduces ``bernoulli_(keep)`` here
_CHECKED: dict[tuple[int, float], bool] = {}


def replicates_bernoulli(numel: int, keep: float) -> bool:
    """Whether the fast draw equals ``bernoulli_`` for this size and probability (checked once, cached)."""
    key = (numel, keep)
    if key not in _CHECKED:
        with torch.random.fork_rng(devices=[]):
            state = torch.get_rng_state()
            slow = torch.empty(numel).bernoulli_(keep)
            after_slow = torch.get_rng_state()
            torch.set_rng_state(state)
            fast = torch.empty(numel, dtype=torch.float64).uniform_().lt_(keep).to(torch.float32)
            after_fast = torch.get_rng_state()
        _CHECKED[key] = torch.equal(slow, fast) and torch.equal(after_slow, after_fast)
    return _CHECKED[key]


class Dropout(nn.Dropout):
    """Drop-in ``nn.Dropout`` (same ``p``, same state dict: none) with the fast CPU draw (module doc)."""

    def forward(self, x: Tensor) -> Tensor:
        p = self.p
        if (not self.training or self.inplace or not 0.0 < p < 1.0 or x.device.type != "cpu"
                or x.dtype != torch.float32 or not replicates_bernoulli(x.numel(), 1.0 - p)):
            return super().forward(x)
        keep = 1.0 - p
        # compare in place in float64 (1.0 / 0.0): bool tensors cost ~5× a float pass on this CPU
        noise = torch.empty(x.shape, dtype=torch.float64).uniform_().lt_(keep).to(x.dtype)
        noise.div_(keep)
        return x * noise
