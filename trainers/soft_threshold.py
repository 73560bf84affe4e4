"""Soft-threshold reparameterization of prunable weights (AdapMTL §3.2, Eq. 2, 4–5; supplement A).

Effective weight: ``Ŵ = S(W, α) = sign(W) · ReLU(|W| − α)`` with ``α = sigmoid(θ)`` and one learnable ``θ``
per *threshold group* (a component, or several components sharing one threshold for the Table 5 ablations).

Why a custom autograd function: plain autograd of ``sign(W)·relu(|W|−α)`` gives the right sub-gradients,
but it keeps ~3 weight-sized intermediates alive per layer until backward (≈1 GB for the 90 M-weight
ResNet34 model). The function below saves only ``Ŵ`` (which the convolution saves anyway) and the 0-d ``α``
and rebuilds the indicator from ``sign(Ŵ)`` in backward. Its gradients are exactly those of the formula (tests compare it with
plain autograd and with the hand formulas):

* ``∂L/∂W = ∂L/∂Ŵ ⊙ 1[|W| > α]``                    (paper Eq. 4–5: the indicator ``B``; computed as
  ``softshrink_backward(∂L/∂Ŵ, Ŵ, 0)``, i.e. the incoming gradient where ``Ŵ ≠ 0`` and +0 elsewhere)
* ``∂L/∂α = −Σ_{|W|>α} ∂L/∂Ŵ · sign(W)``, hence ``∂L/∂θ = −σ'(θ) Σ_{|W|>α} ∂L/∂Ŵ · sign(W)`` (supplement Eq. 1)

Where θ lives: one :class:`ThresholdBank` is attached to the model as ``model.soft_thresholds``; it owns the
θ parameters (one state-dict key each, one entry each in ``model.parameters()``, so the run's Adam — its lr,
betas and *coupled weight decay*, which is what actually raises the thresholds in the official code — applies
to them) and the ``fixed`` flag of the fixed-mask mode. Each parametrization only holds a plain (unregistered)
reference to the bank, so the bank is neither duplicated in ``state_dict`` nor counted twice.

Per step, the model's forward does not take the per-layer path below: a forward pre-hook stages every
threshold group's effective weights at once (``trainers.soft_threshold_fused``: one σ(θ) and one autograd
node per group instead of per layer), and each layer's read of ``module.weight`` in that forward is served
its staged view from torch's parametrization cache (as inside ``parametrize.cached()``: no call through the
ParametrizationList; where the cache cannot be used — tracing, compiling — each SoftThreshold returns the
view). Any other read of ``module.weight`` (accounting, the bake, FLOPs, tests) evaluates the per-layer path
afresh.

Fixed-mask mode (supplement D, see ``trainers.adapmtl``): each parametrization also owns a boolean ``mask``
buffer (all ones until the mask is fixed). Once ``bank.fixed`` is set, the effective threshold is 0 and
``Ŵ = mask ⊙ W`` (the kept weights were baked to their soft-thresholded values at that moment, so ``Ŵ`` is
continuous across the switch).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from trainers.float_mask import FloatMaskCache
from trainers.soft_threshold_fused import (
    BufferPool,
    GroupLayout,
    flat_in_layout,
    fused_soft_threshold,
    group_layout,
)

__all__ = [
    "NonzeroCounter",
    "SoftThreshold",
    "ThresholdBank",
    "group_key",
    "install_soft_thresholds",
    "soft_threshold",
    "soft_threshold_reference",
]

BANK_ATTR = "soft_thresholds"


class _SoftThresholdFn(torch.autograd.Function):
    """``sign(W)·relu(|W|−α)`` (optionally ``⊙ mask``) with memory-lean sub-gradients (see module doc).

    Written with arithmetic only (min/max, sub, sign, mul, dot): on the CPU, comparisons and ``torch.where``
    cost 6-25× an arithmetic pass (AVX2 build, 150k floats: ``where`` 528 µs, ``!=`` 179 µs, ``*`` 27 µs,
    ``sign`` 19 µs, benchmarks/RESULTS.md Q1), and they are bandwidth-bound alike on a GPU.
    """

    @staticmethod
    def forward(ctx, w: Tensor, alpha: Tensor, mask: Tensor | None,  # type: ignore[override]
                counter: NonzeroCounter | None) -> Tensor:
        # W − clamp(W, −α, α) = sign(W)·max(|W| − α, 0) bit for bit (exact zeros inside the band); min/max
        # with a 0-d tensor is half the cost of clamp with tensor bounds on the CPU.
        # One fresh tensor, then in place: every weight-sized allocation costs page faults on the CPU.
        out = torch.maximum(w, -alpha)
        torch.minimum(out, alpha, out=out)
        torch.sub(w, out, out=out)
        if mask is not None:  # a bool mask (read as is), or its cached 0/1 copy on the CPU (see WeightMask)
            out = torch.where(mask, out, out.new_zeros(())) if mask.dtype == torch.bool else out * mask
        # Ŵ itself is saved, not W: the convolution that consumes Ŵ saves it anyway (no extra memory), and
        # s = sign(Ŵ) is the whole backward: Ŵ ≠ 0 ⇔ |W| > α (and mask) — in IEEE arithmetic W − α = 0 only
        # if W = α — and sign(Ŵ) = sign(W) wherever it is kept.
        ctx.save_for_backward(out, alpha)
        ctx.counter = counter
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        out, alpha = ctx.saved_tensors
        s = torch.sign(out).reshape(-1)
        g = grad.reshape(-1)
        grad_w = grad_alpha = None
        if ctx.needs_input_grad[1]:
            grad_alpha = -torch.dot(g, s).reshape(alpha.shape).to(alpha.dtype)
        if ctx.needs_input_grad[0]:
            # g·1[Ŵ ≠ 0] in one fused pass (the same values as (g·s)·s, +0 where pruned)
            grad_w = torch.ops.aten.softshrink_backward(grad, out, 0.0)
        if ctx.counter is not None:
            # s·s sums the kept entries; exact in float32 below 2^24 entries per layer
            kept = torch.dot(s, s) if s.numel() < 2**24 else (s != 0).sum()
            ctx.counter.add(kept)
        return grad_w, grad_alpha, None, None


class NonzeroCounter:
    """Non-zero effective weights of the step, summed by the backward passes that already hold the mask.

    AdapMTL's target rule needs, every step, the number of exact zeros of the Ŵ the forward used. Counting
    it separately costs three weight-sized passes per layer (abs, compare, sum); the backward already has
    the indicator, so its sum (over bool) is nearly free. ``layers`` (a host int) says how many layers
    contributed since the last ``take``: a step whose backward did not reach every layer (or ran twice)
    is detected and the caller counts directly.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.total = torch.zeros((), dtype=torch.int64, device=device)
        self.layers = 0

    def add(self, kept: Tensor | int, layers: int = 1) -> None:
        """Add the non-zeros of ``layers`` layers (one per-layer node, or a fused group's node); ``kept`` a
        count on the device, or a host int where the backward already has it on the host (the CPU kernel)."""
        self.total += kept if isinstance(kept, int) else kept.to(torch.int64)
        self.layers += layers

    def take(self, expected_layers: int) -> Tensor | None:
        """The count of one complete backward (then reset), or None when it was not exactly one."""
        value = self.total.clone() if self.layers == expected_layers else None
        self.total.zero_()
        self.layers = 0
        return value


def soft_threshold(w: Tensor, alpha: Tensor, mask: Tensor | None = None,
                   counter: NonzeroCounter | None = None) -> Tensor:
    """``S(W, α) = sign(W)·ReLU(|W| − α)``, times ``mask`` when given. Exactly 0 wherever ``|W| ≤ α``.

    ``counter``, when given, receives the number of non-zeros of the result during the backward pass.
    """
    return _SoftThresholdFn.apply(w, alpha, mask, counter)


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
        #: host-side knowledge that every mask is still all ones, so the forward may skip it. Only claimed on
        #: the CPU, where the method reads its "fix now" flag on the host; on an accelerator the masks are
        #: baked without a sync, so the host never knows and the mask is always applied.
        self.masks_all_ones = device is None or torch.device(device).type == "cpu"
        #: the per-step non-zero count fed by the backward passes (see NonzeroCounter); set by a method
        #: that needs it, and not fed any more once the mask is fixed
        self.counter: NonzeroCounter | None = None
        #: stage each group's effective weights at once at the start of the model's forward (see the module
        #: doc); False = every layer evaluates its own parametrization (the per-layer path, for comparison)
        self.fused = True
        #: per group, its layers' parametrization lists and SoftThreshold modules (set by install)
        self._members: dict[str, list[tuple[nn.Module, SoftThreshold]]] = {}
        #: during a forward of the model: SoftThreshold → (the W it was computed from, W's version, Ŵ)
        self._staged: dict[SoftThreshold, tuple[Tensor, int, Tensor]] | None = None
        #: per group: (the masks, their versions, dtype) → the flat mask in the group's layout
        self._flat_masks: dict[str, tuple[tuple[Tensor, ...], tuple[int, ...], torch.dtype, Tensor]] = {}
        #: per group: its reusable flat work buffers (CPU)
        self._pools: dict[str, BufferPool] = {}
        #: run the fused path's CPU float32 passes in the compiled kernel (trainers.soft_threshold_kernel);
        #: set by install where it is available, False = stock torch ops (same Ŵ and ∂L/∂W bits)
        self.cpu_kernel = False
        #: each SoftThreshold's module, and its key in torch's parametrization cache, set by install
        self._owner: dict[SoftThreshold, nn.Module] = {}
        #: per group: the weights' data pointers → their flat layout (see ``_layout``)
        self._layouts: dict[str, tuple[list[int], GroupLayout | None]] = {}
        #: during a forward: the open ``parametrize.cached()`` scope and the cache keys this bank filled
        self._cache_scope: Any = None
        self._cache_keys: list[tuple[int, str]] = []

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

    # -- the fused path: one node per group per forward (trainers.soft_threshold_fused) -----------------------
    def _pre_forward(self, module: nn.Module, args: Any) -> None:
        """Forward pre-hook of the model: stage every group's Ŵ for this forward."""
        self._staged = self.stage() if self.fused else None
        if self._staged and _can_prefill_parametrize_cache():
            # Each layer's read of ``module.weight`` is then a lookup in torch's parametrization cache (as
            # inside ``parametrize.cached()``) instead of a call through the ParametrizationList and this
            # layer's SoftThreshold: ~5 µs × 88 reads per MobileNetV2 step (benchmarks/RESULTS.md, Q1 round 5).
            self._cache_scope = parametrize.cached()
            self._cache_scope.__enter__()
            cache = parametrize._cache
            keys = self._cache_keys
            owner = self._owner
            for par, (_, _, w_hat) in self._staged.items():
                key = (id(owner[par]), "weight")
                cache[key] = w_hat
                keys.append(key)

    def _post_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        """Forward hook (always called, also on errors): later reads of ``module.weight`` are fresh."""
        self._staged = None
        if self._cache_scope is not None:
            cache = parametrize._cache
            for key in self._cache_keys:  # ours only: an enclosing cached() block keeps its own entries
                cache.pop(key, None)
            self._cache_keys.clear()
            scope, self._cache_scope = self._cache_scope, None
            scope.__exit__(None, None, None)

    def stage(self) -> dict[SoftThreshold, tuple[Tensor, int, Tensor]]:
        """Each group's effective weights, computed by one fused node (groups that cannot share a flat
        buffer are left to the per-layer path)."""
        staged: dict[SoftThreshold, tuple[Tensor, int, Tensor]] = {}
        counter = None if self.fixed_known else self.counter
        for group, members in self._members.items():
            weights = [plist._parameters["original"] for plist, _ in members]  # (``plist.original``, ~1 µs less)
            layout = self._layout(group, weights)
            if layout is None:
                continue
            mask = None if self.masks_all_ones else self._flat_mask(group, members, layout, weights[0])
            outs = fused_soft_threshold(weights, self.alpha(group), layout, threshold=not self.fixed_known,
                                        mask=mask, counter=counter,
                                        pool=self._pools.setdefault(group, BufferPool()), kernel=self.cpu_kernel)
            for (_, par), w, out in zip(members, weights, outs, strict=True):
                staged[par] = (w, w._version, out)
        return staged

    def _layout(self, group: str, weights: list[Tensor]) -> GroupLayout | None:
        """``group_layout(weights)``, recomputed only when a weight's storage changed (``module.to(...)``,
        ``param.data = ...`` give it new memory): ~1 µs per layer per step less than checking each layout."""
        ptrs = [w.data_ptr() for w in weights]
        cached = self._layouts.get(group)
        if cached is None or cached[0] != ptrs:
            cached = (ptrs, group_layout(weights))
            self._layouts[group] = cached
        return cached[1]

    def _flat_mask(self, group: str, members: Sequence[tuple[nn.Module, SoftThreshold]], layout: GroupLayout,
                   like: Tensor) -> Tensor | None:
        """The group's masks as one flat tensor in ``layout`` order, rebuilt when any mask changes: a 0/1
        copy in the weights' dtype on the CPU (multiplied), the *pruned* bool mask elsewhere (zero-filled)."""
        masks = tuple(par.mask for _, par in members)
        if any(m is None for m in masks):
            return None
        versions = tuple(m._version for m in masks)
        cached = self._flat_masks.get(group)
        if (cached is not None and cached[2] == like.dtype and cached[1] == versions
                and all(a is b for a, b in zip(cached[0], masks, strict=True))):
            return cached[3]
        flat = torch.cat([flat_in_layout(m, cl) for m, cl in zip(masks, layout.channels_last, strict=True)])
        value = flat.to(like.dtype) if like.device.type == "cpu" else ~flat
        self._flat_masks[group] = (masks, versions, like.dtype, value)
        return value


def _can_prefill_parametrize_cache() -> bool:
    """Whether the staged views may be handed to torch's parametrization cache for this forward: not while
    tracing or compiling (the cache refuses tracing; dynamo should see the plain path), and only where torch's
    ``parametrize`` has the cache this relies on (a private dict behind the public ``cached()``; without it
    the staged views are returned by each SoftThreshold, as before)."""
    return (isinstance(getattr(parametrize, "_cache", None), dict) and hasattr(parametrize, "cached")
            and torch._C._get_tracing_state() is None and not torch.compiler.is_compiling())


class SoftThreshold(nn.Module):
    """The parametrization of one weight: ``W ↦ S(W, α_group)`` (⊙ ``mask`` in fixed-mask mode)."""

    def __init__(self, bank: ThresholdBank, group: str, weight: Tensor, *, with_mask: bool) -> None:
        super().__init__()
        # A plain reference, not a submodule: the bank is registered once, on the model.
        object.__setattr__(self, "bank", bank)
        self.group = group
        mask = torch.ones_like(weight, dtype=torch.bool) if with_mask else None
        self.register_buffer("mask", mask)
        self._float_mask = FloatMaskCache()

    def forward(self, w: Tensor) -> Tensor:
        bank = self.bank
        staged = bank._staged
        if staged is not None:  # inside the model's forward: this layer's view of its group's fused node
            entry = staged.get(self)
            if entry is not None and entry[0] is w and entry[1] == w._version:
                return entry[2]
        mask = None if bank.masks_all_ones else self.mask
        if mask is not None and w.device.type == "cpu":
            mask = self._float_mask.get(mask, w.dtype)  # a multiply, ~20× cheaper than where() on the CPU
        counter = None if bank.fixed_known else bank.counter
        return soft_threshold(w, bank.alpha(self.group), mask, counter)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, mask={self.mask is not None}"


def install_soft_thresholds(model: nn.Module, layers: Mapping[str, Sequence[tuple[str, nn.Module]]],
                            group_of: Mapping[str, str], theta_init: float, *, with_mask: bool = False,
                            scale: float = 1.0, fused: bool = True, cpu_kernel: bool | None = None) -> ThresholdBank:
    """Parametrize every layer's ``weight`` and attach the bank to ``model`` as ``model.soft_thresholds``.

    ``layers``: ``{component: [(name, module), ...]}`` (``trainers.sparsity.prunable_weights``);
    ``group_of``: ``{component: threshold group}``. Idempotence is refused rather than silently doubled.
    ``fused``: stage each group's Ŵ once per forward of ``model`` (the default; see the module doc);
    ``cpu_kernel``: run its CPU passes in the compiled kernel (``trainers.soft_threshold_kernel``); None =
    wherever the model is on the CPU and the kernel can be loaded.
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
            par = SoftThreshold(bank, group_of[comp], module.weight, with_mask=with_mask)
            parametrize.register_parametrization(module, "weight", par)
            bank._members.setdefault(group_of[comp], []).append((module.parametrizations["weight"], par))
            bank._owner[par] = module
    bank.fused = fused
    if cpu_kernel is None:
        from trainers import soft_threshold_kernel

        cpu_kernel = device.type == "cpu" and soft_threshold_kernel.available()
    bank.cpu_kernel = bool(cpu_kernel)
    # bound methods (not closures), so that a deep copy of the model stages its own copy of the bank
    model.register_forward_pre_hook(bank._pre_forward)
    model.register_forward_hook(bank._post_forward, always_call=True)
    return bank


def iter_parametrized(layers: Mapping[str, Sequence[tuple[str, nn.Module]]]
                      ) -> Iterator[tuple[str, nn.Parameter, SoftThreshold]]:
    """``(component, original weight W, its SoftThreshold)`` for every installed layer."""
    for comp, mods in layers.items():
        for _, module in mods:
            plist = module.parametrizations["weight"]
            yield comp, plist.original, plist[0]
