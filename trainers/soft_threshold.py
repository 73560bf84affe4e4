"""Soft-threshold reparameterization of prunable weights (AdapMTL §3.2, Eq. 2, 4–5; supplement A).

Effective weight: ``Ŵ = S(W, α) = sign(W) · ReLU(|W| − α)`` with ``α = sigmoid(θ)`` and one learnable ``θ``
per *threshold group* (a component, or several components sharing one threshold for the Table 5 ablations).

Why a custom autograd function: plain autograd of ``sign(W)·relu(|W|−α)`` gives the right sub-gradients,
but it keeps ~3 weight-sized intermediates alive per layer until backward (≈1 GB for the 90 M-weight
ResNet34 model). The function below saves only ``W`` (the parameter itself, no copy) and the 0-d ``α`` and
recomputes the keep-mask in backward. Its gradients are exactly those of the formula (tests compare it with
plain autograd and with the hand formulas):

* ``∂L/∂W = ∂L/∂Ŵ ⊙ 1[|W| > α]``                    (paper Eq. 4–5: the indicator ``B``)
* ``∂L/∂α = −Σ_{|W|>α} ∂L/∂Ŵ · sign(W)``, hence ``∂L/∂θ = −σ'(θ) Σ_{|W|>α} ∂L/∂Ŵ · sign(W)`` (supplement Eq. 1)

Where θ lives: one :class:`ThresholdBank` is attached to the model as ``model.soft_thresholds``; it owns the
θ parameters (one state-dict key each, one entry each in ``model.parameters()``, so the run's Adam — its lr,
betas and *coupled weight decay*, which is what actually raises the thresholds in the official code — applies
to them) and the ``fixed`` flag of the fixed-mask mode. Each parametrization only holds a plain (unregistered)
reference to the bank, so the bank is neither duplicated in ``state_dict`` nor counted twice.

Fixed-mask mode (supplement D, see ``trainers.adapmtl``): each parametrization also owns a boolean ``mask``
buffer (all ones until the mask is fixed). Once ``bank.fixed`` is set, the effective threshold is 0 and
``Ŵ = mask ⊙ W`` (the kept weights were baked to their soft-thresholded values at that moment, so ``Ŵ`` is
continuous across the switch).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = [
    "SoftThreshold",
    "ThresholdBank",
    "group_key",
    "install_soft_thresholds",
    "soft_threshold",
    "soft_threshold_reference",
]

BANK_ATTR = "soft_thresholds"


class _SoftThresholdFn(torch.autograd.Function):
    """``sign(W)·relu(|W|−α)`` (optionally ``⊙ mask``) with memory-lean sub-gradients (see module doc)."""

    @staticmethod
    def forward(ctx, w: Tensor, alpha: Tensor, mask: Tensor | None) -> Tensor:  # type: ignore[override]
        # W − clamp(W, −α, α) = sign(W)·max(|W| − α, 0) bit for bit, in 2 passes instead of 5 (exact zeros).
        out = w - torch.clamp(w, -alpha, alpha)
        if mask is not None:
            out = out * mask
        ctx.save_for_backward(w, alpha, mask)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        w, alpha, mask = ctx.saved_tensors
        keep = w.abs() > alpha
        if mask is not None:
            keep &= mask.bool()
        kept_grad = torch.where(keep, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
        grad_w = kept_grad if ctx.needs_input_grad[0] else None
        grad_alpha = None
        if ctx.needs_input_grad[1]:
            grad_alpha = -torch.dot(kept_grad.reshape(-1), torch.sign(w).reshape(-1)).reshape(alpha.shape).to(alpha.dtype)
        return grad_w, grad_alpha, None


def soft_threshold(w: Tensor, alpha: Tensor, mask: Tensor | None = None) -> Tensor:
    """``S(W, α) = sign(W)·ReLU(|W| − α)``, times ``mask`` when given. Exactly 0 wherever ``|W| ≤ α``."""
    return _SoftThresholdFn.apply(w, alpha, mask)


def soft_threshold_reference(w: Tensor, alpha: Tensor) -> Tensor:
    """The formula with plain autograd (tests compare :func:`soft_threshold` against it)."""
    return torch.sign(w) * torch.relu(w.abs() - alpha)


def group_key(name: str) -> str:
    """Parameter-name-safe key of a threshold group (``head/normal`` → ``head__normal``)."""
    return name.replace("/", "__").replace(".", "_")


class ThresholdBank(nn.Module):
    """Owns the θ of every threshold group (``θ = scale · φ``, ``φ`` the stored parameter) and ``fixed``.

    ``scale`` is the optional threshold-speed knob (``threshold_lr_scale``): Adam's step is nearly invariant
    to the gradient's scale, so storing ``φ = θ/scale`` makes θ move ≈ ``scale × lr`` per step. ``scale = 1``
    is the official behaviour (θ itself is the parameter).
    """

    def __init__(self, groups: Sequence[str], theta_init: float, *, scale: float = 1.0,
                 device: torch.device | None = None, fixable: bool = False) -> None:
        super().__init__()
        #: whether the fixed-mask mode is in use (otherwise ``fixed`` is never set and ``alpha`` skips it)
        self.fixable = fixable
        if not groups:
            raise ValueError("a threshold bank needs at least one group")
        self.scale = float(scale)
        self.groups: tuple[str, ...] = tuple(groups)
        self.theta = nn.ParameterDict({
            group_key(g): nn.Parameter(torch.tensor(theta_init / self.scale, dtype=torch.float32, device=device))
            for g in self.groups
        })
        self.register_buffer("fixed", torch.zeros((), dtype=torch.bool, device=device))
        #: host-side hint that ``fixed`` is set (only ever True when the device flag is; lets the method skip
        #: per-step work without reading the device flag every step).
        self.fixed_known = False

    def parameter(self, group: str) -> nn.Parameter:
        return self.theta[group_key(group)]

    def parameters_list(self) -> list[nn.Parameter]:
        return [self.theta[group_key(g)] for g in self.groups]

    def theta_value(self, group: str) -> Tensor:
        """θ of ``group`` (a 0-d tensor that carries the gradient back to the stored parameter)."""
        p = self.parameter(group)
        return p * self.scale if self.scale != 1.0 else p

    def alpha(self, group: str) -> Tensor:
        """The threshold the forward pass uses: ``σ(θ)``, or 0 once the mask is fixed."""
        a = torch.sigmoid(self.theta_value(group))
        if not self.fixable:
            return a
        if self.fixed_known:
            return torch.zeros_like(a)
        return a.masked_fill(self.fixed, 0.0)

    def set_theta(self, group: str, value: float) -> None:
        with torch.no_grad():
            self.parameter(group).fill_(value / self.scale)


class SoftThreshold(nn.Module):
    """The parametrization of one weight: ``W ↦ S(W, α_group)`` (⊙ ``mask`` in fixed-mask mode)."""

    def __init__(self, bank: ThresholdBank, group: str, weight: Tensor, *, with_mask: bool) -> None:
        super().__init__()
        # A plain reference, not a submodule: the bank is registered once, on the model.
        object.__setattr__(self, "bank", bank)
        self.group = group
        mask = torch.ones_like(weight, dtype=torch.bool) if with_mask else None
        self.register_buffer("mask", mask)

    def forward(self, w: Tensor) -> Tensor:
        return soft_threshold(w, self.bank.alpha(self.group), self.mask)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, mask={self.mask is not None}"


def install_soft_thresholds(model: nn.Module, layers: Mapping[str, Sequence[tuple[str, nn.Module]]],
                            group_of: Mapping[str, str], theta_init: float, *, with_mask: bool = False,
                            scale: float = 1.0) -> ThresholdBank:
    """Parametrize every layer's ``weight`` and attach the bank to ``model`` as ``model.soft_thresholds``.

    ``layers``: ``{component: [(name, module), ...]}`` (``trainers.sparsity.prunable_weights``);
    ``group_of``: ``{component: threshold group}``. Idempotence is refused rather than silently doubled.
    """
    if hasattr(model, BANK_ATTR):
        raise RuntimeError("soft thresholds are already installed on this model")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    groups = list(dict.fromkeys(group_of[c] for c in layers))
    bank = ThresholdBank(groups, theta_init, scale=scale, device=device, fixable=with_mask)
    setattr(model, BANK_ATTR, bank)
    for comp, mods in layers.items():
        for _, module in mods:
            if parametrize.is_parametrized(module, "weight"):
                raise RuntimeError(f"{type(module).__name__} weight in {comp} is already parametrized")
            parametrize.register_parametrization(
                module, "weight", SoftThreshold(bank, group_of[comp], module.weight, with_mask=with_mask))
    return bank


def iter_parametrized(layers: Mapping[str, Sequence[tuple[str, nn.Module]]]
                      ) -> Iterator[tuple[str, nn.Parameter, SoftThreshold]]:
    """``(component, original weight W, its SoftThreshold)`` for every installed layer."""
    for comp, mods in layers.items():
        for _, module in mods:
            plist = module.parametrizations["weight"]
            yield comp, plist.original, plist[0]
