"""Adaptive task weighting β_t (AdapMTL §3.3, Eq. 6) and the official repository's variant, on the device.

Every quantity stays a device tensor: the per-task loss fluctuations live in a ring buffer of the last
``K`` normalized loss changes (``K = window``, or 1 without the sliding window), written at a host-known
position. Because exactly one entry per task is recorded per step, the fill level is a host integer and no
``.item()`` is ever needed.

Normalized loss change at step j (both variants): ``r_t(j) = |L_t(j) − L_t(j−1)| / |L_t(j)|`` — divided by
the *current* loss, as the official code does (the paper's "average deviation of the loss within the sliding
window divided by L_t" does not say which L_t; per-step normalization is robust to the loss drifting inside a
400-step window). The fluctuation is ``d_t = mean of the last K r_t``.

Variants (``weighting``):

* ``paper`` (Eq. 6): ``β_t = (d_t / mean_u d_u)^−1 · F`` with ``F = λ·|W_B| / Σ_u|W_u|`` (``F = 1`` when
  ``use_lambda`` is off). A *stable* task gets a *larger* β. Changes are recorded from the second step on,
  and β_t = 1 for ``step < warmup`` (supplement C.2), so β is adaptive from the first post-warm-up step with
  a full window when ``warmup ≥ K``.
* ``official_code`` (METHODS_SPEC §1.8): recording starts at ``step ≥ warmup`` (the code's
  ``adaptive_loss_begin``); a weight is recomputed only once more than ``K`` changes were recorded (the
  code appends, then pops when ``len > K``), as ``w_t = d_t`` (weight ∝ fluctuation — the reciprocal of
  Eq. 6), then rescaled to sum to T. The code hard-codes the sum to 3 (NYUv2's T, so Taskonomy's five
  weights start at 0.6); here it is T, so every variant starts at 1 for any number of tasks. No λ, no
  parameter-count factor.
* ``equal``: β_t = 1 (Table 5 / supplement Fig. 3 "equal weight").

β multiplies the task loss, so (as in the code) it reaches the backbone through that loss as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["AdaptiveWeighting", "Variant"]

Variant = Literal["paper", "official_code", "equal"]
_EPS = 1e-12


class AdaptiveWeighting:
    """Stateful β computation. Call once per training step with the detached task losses."""

    def __init__(self, tasks: Sequence[str], *, variant: Variant = "paper", window: int = 400,
                 sliding_window: bool = True, warmup: int = 5000, factor: float = 1.0,
                 device: torch.device | str = "cpu") -> None:
        if variant not in ("paper", "official_code", "equal"):
            raise ValueError(f"unknown weighting variant {variant!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.tasks = list(tasks)
        self.variant: Variant = variant
        self.k = int(window) if sliding_window else 1
        self.warmup = int(warmup)
        self.factor = float(factor)
        self.device = torch.device(device)
        n = len(self.tasks)
        self.buf = torch.zeros(n, self.k, device=self.device)
        self.prev = torch.zeros(n, device=self.device)
        self.beta = torch.ones(n, device=self.device)
        self.fluct = torch.zeros(n, device=self.device)
        self.has_prev = False
        self.count = 0  # changes recorded so far (host-side: one per step)

    # -- the step --------------------------------------------------------------------------------
    def __call__(self, step: int, losses: Mapping[str, Tensor]) -> dict[str, Tensor | float]:
        """β per task at ``step`` (0-d device tensors; plain 1.0 for ``equal``)."""
        if self.variant == "equal":
            return {t: 1.0 for t in self.tasks}
        current = torch.stack([losses[t].detach().reshape(()).float() for t in self.tasks]).to(self.device)
        if self.variant == "paper":
            self._record(current)
            if step >= self.warmup and self.count > 0:
                d = self._fluctuation()
                self.beta = (d.mean() / d) * self.factor
        else:  # official_code
            if step >= self.warmup:
                self._record(current)
                if self.count > self.k:
                    d = self._fluctuation()
                    self.beta = d * (len(self.tasks) / d.sum())
        return dict(zip(self.tasks, self.beta.unbind(), strict=True))

    def _record(self, current: Tensor) -> None:
        if self.has_prev:
            change = (current - self.prev).abs() / current.abs().clamp_min(_EPS)
            self.buf[:, self.count % self.k] = change
            self.count += 1
        self.prev = current.clone()
        self.has_prev = True

    def _fluctuation(self) -> Tensor:
        filled = min(self.count, self.k)  # the ring fills columns 0..k-1 in order
        self.fluct = self.buf[:, :filled].mean(dim=1).clamp_min(_EPS)
        return self.fluct

    # -- logging / resume ------------------------------------------------------------------------
    def log_tensors(self) -> dict[str, Tensor]:
        """Device scalars to log (read at logging intervals only)."""
        out: dict[str, Tensor] = {}
        for i, t in enumerate(self.tasks):
            out[f"adapmtl/beta/{t}"] = self.beta[i]
            out[f"adapmtl/fluctuation/{t}"] = self.fluct[i]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"buf": self.buf.clone(), "prev": self.prev.clone(), "beta": self.beta.clone(),
                "fluct": self.fluct.clone(), "has_prev": self.has_prev, "count": self.count,
                "tasks": list(self.tasks), "k": self.k}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["tasks"]) != self.tasks or int(state["k"]) != self.k:
            raise ValueError("weighting state belongs to another task list or window size")
        self.buf = state["buf"].to(self.device).clone()
        self.prev = state["prev"].to(self.device).clone()
        self.beta = state["beta"].to(self.device).clone()
        self.fluct = state["fluct"].to(self.device).clone()
        self.has_prev = bool(state["has_prev"])
        self.count = int(state["count"])
