"""One autograd node per threshold group instead of one per layer: AdapMTL's per-step fixed cost.

Why: the per-layer soft threshold (``trainers.soft_threshold``) is one Python ``autograd.Function`` call,
one ``σ(θ)`` node and ~15 small ATen calls per parametrized layer per step, forward and backward. At the CPU
sizes the layers are small (ResNet34 width 0.125: 72 layers, median 9k weights; MobileNetV2: 88 layers,
median 1.3k), so that fixed cost, not the elementwise work, was most of AdapMTL's overhead over the dense
step (benchmarks/RESULTS.md, Q1 round 2/3).

How: at the start of every forward of the model that carries the bank (a forward pre-hook installed by
``install_soft_thresholds``), each threshold group's effective weights are computed at once: the group's
``W`` are concatenated in memory order into one flat buffer, thresholded by one op with the group's
``α = σ(θ)`` (computed once per group, not once per layer), optionally masked, and each layer's
parametrization returns its view of that buffer. The backward is one node per group: the weight gradients
are concatenated, ``∂L/∂α = −⟨g, sign(Ŵ)⟩`` is one dot, ``∂L/∂W = g·1[Ŵ ≠ 0]`` one fused op (in place) whose
slices are the layers' gradients, and the non-zero count the target rule needs is one more dot. A forward
post-hook drops the staged tensors, so ``module.weight`` read anywhere else (sparsity accounting, the
fix-mask bake, FLOP scaling, checkpoints) is the per-layer path, evaluated afresh.

On the CPU the threshold is ``W − clamp(W, −α, α)`` with ``α`` read as a host float, written layer by layer
straight into the group's buffer (no concatenation copy; scalar bounds are ~2× cheaper than tensor bounds
there), and a read of a CPU tensor is not a device sync. ``softshrink`` would be one pass instead of two but
is only equal in value: its scalar tail loop gives −0 where the formula gives +0. On accelerators the group is
concatenated once and thresholded with the 0-d tensor ``α`` (no host read per step, benchmarks Q2). Where
the fused CPU kernel is built (``trainers.soft_threshold_kernel``), the CPU forward and backward of a group
are one pass each over its weights instead of two and five stock ops.

Exactness against the per-layer path (tests/test_soft_threshold_fused.py): ``Ŵ`` bit for bit;
``∂L/∂W`` value for value (``softshrink_backward`` writes +0 where the per-layer ``(g·s)·s`` gave −0 before
round 3, and 0 where a pruned weight's incoming gradient is non-finite); ``∂L/∂θ`` is the same sum in another
order (one dot over the group, where the per-layer path adds one dot per layer in the autograd engine's
order), so it agrees to float32 rounding, not bitwise. The non-zero count is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from trainers import soft_threshold_kernel as cpu_kernel

if TYPE_CHECKING:  # pragma: no cover
    from trainers.soft_threshold import NonzeroCounter

__all__ = ["CPU_SCALAR_ALPHA", "BufferPool", "GroupLayout", "count_kept", "flat_in_layout", "fused_soft_threshold", "group_layout"]

#: On the CPU, read α on the host and threshold with scalar clamp bounds, layer by layer into the group's
#: buffer. Tests and the host-sync benchmark turn it off to run the accelerator code path (tensor α, no host
#: read) on the CPU.
CPU_SCALAR_ALPHA = True

#: float32 counts integers exactly below 2^24: ``dot(s, s)`` of a chunk at most this long is exact.
_EXACT_CHUNK = 2**24 - 1


@dataclass(frozen=True)
class GroupLayout:
    """How a group's layers lie in the flat buffer: per layer its shape, size and memory order."""

    shapes: tuple[torch.Size, ...]
    sizes: tuple[int, ...]
    channels_last: tuple[bool, ...]

    @property
    def numel(self) -> int:
        return sum(self.sizes)


def _layout_of(t: Tensor) -> bool | None:
    """False: contiguous; True: 4-d channels_last; None: neither (the group is not fused)."""
    if t.is_contiguous():
        return False
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return True
    return None


def group_layout(weights: Sequence[Tensor]) -> GroupLayout | None:
    """The flat layout of ``weights``, or None when they cannot share one buffer (mixed dtype/device,
    an unusual memory format, an empty group)."""
    if not weights:
        return None
    dtype, device = weights[0].dtype, weights[0].device
    cl: list[bool] = []
    for w in weights:
        layout = _layout_of(w)
        if layout is None or w.dtype != dtype or w.device != device:
            return None
        cl.append(layout)
    return GroupLayout(tuple(w.shape for w in weights), tuple(w.numel() for w in weights), tuple(cl))


def flat_in_layout(t: Tensor, channels_last: bool) -> Tensor:
    """``t``'s elements in the layer's memory order (a view when ``t`` has that layout, else a copy)."""
    return t.permute(0, 2, 3, 1).reshape(-1) if channels_last else t.reshape(-1)


def _unflat(flat: Tensor, shape: torch.Size, channels_last: bool) -> Tensor:
    """The view of a flat slice with the layer's shape and memory format."""
    if channels_last:
        n, c, h, w = shape
        return flat.view(n, h, w, c).permute(0, 3, 1, 2)
    return flat.view(shape)


class BufferPool:
    """Flat work buffers of one group, reused across steps on the CPU when nothing else still holds them.

    Why: a fresh weight-sized CPU tensor per step is fresh memory from the C allocator, and its first touch
    costs page faults — the profile put the group's ``cat`` and ``sign`` at ~4× a copy of cached memory
    (MobileNetV2 w0.125, 2.5 M weights). A buffer is handed out again only when its storage has no other
    owner (the autograd graph that saved Ŵ is gone, the parameters' ``.grad`` views were set to None), so
    a live graph or a kept gradient is never overwritten; otherwise a fresh one replaces it. Off the CPU
    the device allocator caches memory already, and every call allocates.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, tuple[Tensor, int]] = {}

    @staticmethod
    def _owners(t: Tensor) -> int:
        return torch._C._storage_Use_Count(t.untyped_storage()._cdata)

    def get(self, purpose: str, numel: int, like: Tensor) -> Tensor:
        if like.device.type != "cpu":
            return torch.empty(numel, dtype=like.dtype, device=like.device)
        held = self._bufs.get(purpose)
        if held is not None:
            buf, alone = held
            if buf.numel() == numel and buf.dtype == like.dtype and self._owners(buf) == alone:
                return buf
        buf = torch.empty(numel, dtype=like.dtype)
        self._bufs[purpose] = (buf, self._owners(buf))
        return buf


def count_kept(s: Tensor) -> Tensor:
    """Non-zeros of ``s = sign(Ŵ)`` as an int64 0-d tensor: ``⟨s, s⟩`` per chunk of < 2^24 (exact), summed."""
    if s.numel() <= _EXACT_CHUNK:
        return torch.dot(s, s).to(torch.int64)
    return torch.stack([torch.dot(c, c).to(torch.int64) for c in s.split(_EXACT_CHUNK)]).sum()


def layer_views(flat: Tensor, layout: GroupLayout, like: Sequence[Tensor]) -> list[Tensor]:
    """One view of ``flat`` per layer, with the layer's shape and memory format (one C++ call when the
    group is contiguous)."""
    if not any(layout.channels_last):
        return list(torch._C._nn.unflatten_dense_tensors(flat, list(like)))
    return [_unflat(o, shape, cl) for o, shape, cl in
            zip(flat.split(layout.sizes), layout.shapes, layout.channels_last, strict=True)]


_SOFTSHRINK_BACKWARD = torch.ops.aten.softshrink_backward.grad_input


class _GroupSoftThresholdFn(torch.autograd.Function):
    """``S(W_l, α)`` (⊙ mask) for every layer ``l`` of one threshold group, as one autograd node.

    Every weight-sized result is written into a flat buffer of the group (no concatenation copies on the
    CPU path): the forward's ``Ŵ`` by ``clamp(out=)`` + ``sub(out=)`` per layer, the backward's ``∂L/∂W`` by
    one ``softshrink_backward(out=)`` per layer; ``sign``, the two dots and the mask are then one op over
    the whole group. With ``kernel`` (CPU, float32) the fused kernel does each direction in one pass.
    """

    @staticmethod
    def forward(ctx: Any, alpha: Tensor, lam: float | None, threshold: bool, mask: Tensor | None,  # type: ignore[override]
                counter: NonzeroCounter | None, layout: GroupLayout, pool: BufferPool, kernel: bool,
                *weights: Tensor) -> tuple[Tensor, ...]:
        out = pool.get("w_hat", layout.numel, weights[0])
        views = layer_views(out, layout, weights)
        if threshold and lam is not None and kernel:  # the fused CPU kernel: read W, write Ŵ, once
            cpu_kernel.threshold_into(weights, out, lam)
        elif threshold and lam is not None:  # CPU: W − clamp(W, −α, α) with host-float bounds, layer by layer
            for w, v in zip(weights, views, strict=True):
                torch.clamp(w, -lam, lam, out=v)
                torch.sub(w, v, out=v)  # the second pass reads what the first just wrote (in cache)
        else:
            torch.cat([flat_in_layout(w, cl) for w, cl in zip(weights, layout.channels_last, strict=True)],
                      out=out)
            if threshold:  # the per-layer formula with a 0-d tensor α: no host read
                clamped = torch.maximum(out, -alpha)
                torch.minimum(clamped, alpha, out=clamped)
                out.sub_(clamped)
        if mask is not None:  # a cached flat 0/1 float copy on the CPU, else a flat bool "pruned" mask
            if mask.dtype == torch.bool:
                out.masked_fill_(mask, 0.0)
            else:
                out.mul_(mask)
        ctx.save_for_backward(out, alpha)
        ctx.counter = counter
        ctx.layout = layout
        ctx.pool = pool
        ctx.kernel = kernel
        return tuple(views)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        out, alpha = ctx.saved_tensors
        layout: GroupLayout = ctx.layout
        pool: BufferPool = ctx.pool
        # ∂L/∂W = g·1[Ŵ ≠ 0], layer by layer into one flat buffer (the layers' gradients are its views)
        grad_w = pool.get("grad", layout.numel, out)
        grad_views = layer_views(grad_w, layout, grads)
        grad_alpha = None
        # one pass: ∂L/∂W, ⟨∂L/∂W, sign(Ŵ)⟩ and the count of sign(Ŵ) ≠ 0 (trainers.soft_threshold_kernel),
        # where every incoming gradient is one the kernel indexes directly (it checks; None otherwise)
        fused = cpu_kernel.backward_into(grads, out, grad_w, layout.channels_last) if ctx.kernel else None
        if fused is not None:
            dot, kept = fused
            if ctx.needs_input_grad[0]:
                grad_alpha = torch.tensor(-dot, dtype=alpha.dtype).reshape(alpha.shape)
            if ctx.counter is not None:
                ctx.counter.add(kept, layers=len(layout.sizes))  # a host int: one scalar add
        else:
            for g, o, gv in zip(grads, layer_views(out, layout, grads), grad_views, strict=True):
                _SOFTSHRINK_BACKWARD(g, o, 0.0, grad_input=gv)
            if ctx.needs_input_grad[0] or ctx.counter is not None:
                s = torch.sign(out, out=pool.get("sign", layout.numel, out))
                if ctx.needs_input_grad[0]:  # ⟨∂L/∂W, s⟩ = ⟨g, s⟩ (they differ only where s = 0)
                    grad_alpha = -torch.dot(grad_w, s).reshape(alpha.shape).to(alpha.dtype)
                if ctx.counter is not None:
                    ctx.counter.add(count_kept(s), layers=len(layout.sizes))
        weight_grads = tuple(grad_views) if any(ctx.needs_input_grad[8:]) else (None,) * len(layout.sizes)
        return (grad_alpha, None, None, None, None, None, None, None, *weight_grads)


def fused_soft_threshold(weights: Sequence[Tensor], alpha: Tensor, layout: GroupLayout, *,
                         threshold: bool = True, mask: Tensor | None = None,
                         counter: NonzeroCounter | None = None,
                         pool: BufferPool | None = None, kernel: bool = False) -> tuple[Tensor, ...]:
    """The effective weights of one threshold group, one view per layer of one flat buffer.

    ``threshold=False`` skips the threshold (the fixed-mask mode once α is known to be 0 on the host: ``W − clamp(W, 0, 0) = W``);
    ``mask``: the group's flat mask in ``layout`` order, as a 0/1 float (multiplied) or as a bool *pruned*
    mask (zero-filled); ``counter`` receives the group's non-zero count in the backward; ``kernel``: use the
    fused CPU kernel (``trainers.soft_threshold_kernel``, loaded) for float32 CPU weights.
    """
    lam = None
    if threshold and CPU_SCALAR_ALPHA and alpha.device.type == "cpu":
        lam = float(alpha.detach())  # a CPU tensor's value: a memory read, not a device sync
    kernel = kernel and weights[0].device.type == "cpu" and weights[0].dtype == torch.float32
    return _GroupSoftThresholdFn.apply(alpha, lam, threshold, mask, counter, layout, pool or BufferPool(), kernel,
                                       *weights)
