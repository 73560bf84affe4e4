"""Binary-mask machinery shared by the comparison methods (SNIP, LTH, IMP, DiSparse): written once, here.

Why a ``torch.nn.utils.parametrize`` mask rather than gradient hooks:

* ``module.weight`` becomes ``original ⊙ mask``, so the forward pass, :mod:`trainers.sparsity` and the FLOP
  count all see the *effective* weight, and pruned weights are exactly zero in the forward whatever Adam and
  its coupled weight decay do to the stored tensor.
* The gradient reaching ``original`` is already ``g ⊙ mask``; no separate gradient masking is needed.
* The mask is a buffer of the parametrization module, so it lives in ``model.state_dict()`` and a checkpoint
  resumes with the exact mask, with no method-side bookkeeping.

By default the stored values are also zeroed at prune time and after every optimizer step
(:meth:`MaskSet.enforce_`): Adam's first moment, inherited from before a prune, would otherwise move a
pruned stored weight off zero, and a later regrowth or a mask removal would expose it. A method that wants
the official ``torch.nn.utils.prune`` semantics instead (DiSparse: ``weight_orig`` keeps the pruned values,
which evolve only under weight decay and Adam's moments, and a regrown weight comes back with its stored
value) installs the masks with ``keep_pruned_values=True``; the effective weight ``original ⊙ mask`` is
exactly zero at every pruned position either way.

Selection is by exact count: :func:`topk_mask` keeps exactly ``k`` entries, ties broken by position (lower
flat index first, in layer order), entirely on the device, so a method that asks for ``keep_count(N, s)``
weights ends at ``s`` to the weight and the same scores always give the same mask.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from trainers.float_mask import FloatMaskCache
from trainers.methods import MethodContext, PruningMethod
from trainers.sparsity import prunable_weights, unwrap

__all__ = [
    "MaskSet",
    "MaskedLayer",
    "MaskedMethod",
    "WeightMask",
    "all_reduce_",
    "apportion",
    "global_topk_masks",
    "install_masks",
    "keep_count",
    "magnitude_scores",
    "preserved_buffers",
    "remove_masks",
    "topk_mask",
]

_MASK_SUFFIX = ".parametrizations.weight.0.mask"


class WeightMask(nn.Module):
    """Parametrization ``weight -> weight ⊙ mask`` with a boolean mask buffer (1 byte per weight)."""

    def __init__(self, shape: Sequence[int], device: torch.device | None = None) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(tuple(shape), dtype=torch.bool, device=device))
        self._float_mask = FloatMaskCache()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.device.type == "cpu":
            # On the CPU `where` costs ~20× a multiply (benchmarks/RESULTS.md Q1): multiply by the cached 0/1
            # copy of the mask instead (same values, the sign of zeros aside; backward is a multiply too).
            return weight * self.multiplier(weight.dtype)
        # Elsewhere where() reads the 1-byte mask directly; `weight * mask` would materialise a float copy
        # of it in the forward and again in the backward.
        return torch.where(self.mask, weight, weight.new_zeros(()))

    def multiplier(self, dtype: torch.dtype) -> torch.Tensor:
        """The mask as 0/1 in ``dtype``, cached until the mask changes (see ``trainers.float_mask``)."""
        return self._float_mask.get(self.mask, dtype)


@dataclass(frozen=True)
class MaskedLayer:
    """One prunable weight under a :class:`WeightMask`."""

    name: str
    component: str
    module: nn.Module

    @property
    def parametrization(self) -> WeightMask:
        return self.module.parametrizations.weight[0]  # type: ignore[union-attr,index]

    @property
    def original(self) -> torch.Tensor:
        """The stored (trainable) tensor; zero at pruned positions unless the set keeps pruned values."""
        return self.module.parametrizations.weight.original  # type: ignore[union-attr]

    @property
    def mask(self) -> torch.Tensor:
        return self.parametrization.mask

    @property
    def numel(self) -> int:
        return self.mask.numel()


def _masked_module(module: nn.Module) -> bool:
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(isinstance(p, WeightMask) for p in module.parametrizations.weight)  # type: ignore[union-attr]


class MaskSet:
    """All masked prunable weights of a model, in ``prunable_weights`` order (backbone, then heads)."""

    def __init__(self, layers: Sequence[MaskedLayer], *, keep_pruned_values: bool = False) -> None:
        self.layers: list[MaskedLayer] = list(layers)
        self.total: int = sum(layer.numel for layer in self.layers)
        #: False: stored weights are zero wherever the mask is off; True: they keep their values (see module doc)
        self.keep_pruned_values = keep_pruned_values

    # -- construction ----------------------------------------------------------------------------------
    @classmethod
    def install(cls, model: nn.Module, *, keep_pruned_values: bool = False) -> MaskSet:
        """Put an all-ones :class:`WeightMask` on every prunable weight (idempotent: reuses existing masks)."""
        layers = []
        for comp, mods in prunable_weights(unwrap(model)).items():
            for name, module in mods:
                if not _masked_module(module):
                    if parametrize.is_parametrized(module, "weight"):
                        raise RuntimeError(f"{name}.weight already carries another parametrization")
                    weight = module.weight
                    parametrize.register_parametrization(module, "weight", WeightMask(weight.shape, weight.device))
                layers.append(MaskedLayer(name, comp, module))
        return cls(layers, keep_pruned_values=keep_pruned_values)

    # -- views -----------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def originals(self) -> list[torch.Tensor]:
        return [layer.original for layer in self.layers]

    def masks(self) -> list[torch.Tensor]:
        return [layer.mask for layer in self.layers]

    def indices(self, components: Sequence[str]) -> list[int]:
        """Positions of the layers belonging to ``components`` (e.g. ``["backbone", "head/normal"]``)."""
        wanted = set(components)
        return [i for i, layer in enumerate(self.layers) if layer.component in wanted]

    @torch.no_grad()
    def effective(self) -> list[torch.Tensor]:
        """``original ⊙ mask`` of every layer (detached)."""
        return [layer.original * layer.mask for layer in self.layers]

    def kept(self) -> torch.Tensor:
        """Number of unmasked weights (0-d device tensor; no host sync)."""
        return torch.stack([m.sum() for m in self.masks()]).sum()

    def kept_per_layer(self) -> list[int]:
        """Unmasked weights per layer (ONE host sync: call only at prune/update steps)."""
        return torch.stack([m.sum() for m in self.masks()]).tolist()

    # -- updates ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def enforce_(self) -> None:
        """Zero the stored weights at pruned positions (after every optimizer step; no host sync).

        A no-op with ``keep_pruned_values`` (the stored values are the method's to keep)."""
        if self.keep_pruned_values:
            return
        for layer in self.layers:
            original = layer.original
            if original.device.type == "cpu":  # a multiply, not masked_fill_ + bitwise_not (see WeightMask)
                original.mul_(layer.parametrization.multiplier(original.dtype))
            else:
                original.masked_fill_(~layer.mask, 0)

    @torch.no_grad()
    def set_masks(self, masks: Sequence[torch.Tensor], indices: Sequence[int] | None = None) -> None:
        """Replace the masks (of ``indices``, default all layers) and zero the newly pruned stored weights
        (unless ``keep_pruned_values``)."""
        idx = range(len(self.layers)) if indices is None else indices
        if len(masks) != len(idx):
            raise ValueError(f"got {len(masks)} masks for {len(idx)} layers")
        for i, new in zip(idx, masks, strict=True):
            layer = self.layers[i]
            layer.mask.copy_(new.reshape(layer.mask.shape))
            if not self.keep_pruned_values:
                layer.original.masked_fill_(~layer.mask, 0)

    @torch.no_grad()
    def fill_(self, value: bool = True) -> None:
        for m in self.masks():
            m.fill_(value)

    # -- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{layer name: mask copy}`` (the model's state_dict holds the masks too; this is for snapshots)."""
        return {layer.name: layer.mask.detach().clone() for layer in self.layers}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"mask state lacks {len(missing)} layers, e.g. {missing[0]}")
        self.set_masks([state[n].to(self.layers[i].mask.device) for i, n in enumerate(self.names)])


def install_masks(model: nn.Module) -> MaskSet:
    """Shorthand for :meth:`MaskSet.install`."""
    return MaskSet.install(model)


def remove_masks(model: nn.Module, *, bake: bool = True) -> None:
    """Remove every :class:`WeightMask`; with ``bake`` the masked (effective) weight becomes the plain weight."""
    for mods in prunable_weights(unwrap(model)).values():
        for _, module in mods:
            if _masked_module(module):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=bake)


def is_mask_key(key: str) -> bool:
    """Whether a ``model.state_dict()`` key is a mask buffer of this module."""
    return key.endswith(_MASK_SUFFIX)


# -- exact-count selection ---------------------------------------------------------------------------
def keep_count(total: int, sparsity: float) -> int:
    """Weights to keep so that the zero fraction is ``sparsity`` to the nearest weight."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return total - int(round(sparsity * total))


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` largest entries of a 1-D tensor; ties go to the lower index.

    Device-only (``kthvalue`` + a cumulative count over the tied entries), so it is deterministic and never
    syncs. NaN scores rank last.
    """
    scores = scores.reshape(-1)
    n = scores.numel()
    if not 0 <= k <= n:
        raise ValueError(f"cannot keep {k} of {n} entries")
    if k == 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k == n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    s = torch.nan_to_num(scores.float(), nan=-math.inf)
    threshold = torch.kthvalue(s, n - k + 1).values  # the k-th largest value
    greater = s > threshold
    ties = s == threshold
    need = k - greater.sum()
    return greater | (ties & (torch.cumsum(ties, 0) <= need))


def global_topk_masks(scores: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """One global top-``k`` over several tensors (flattened and concatenated in order); masks per tensor."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    keep = topk_mask(flat, k)
    return [m.reshape(s.shape) for m, s in zip(keep.split([s.numel() for s in scores]), scores, strict=True)]


def magnitude_scores(masks: MaskSet, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
    """``|effective weight|`` with pruned positions at ``-inf`` (so a magnitude prune never revives them)."""
    idx = range(len(masks.layers)) if indices is None else indices
    out = []
    with torch.no_grad():
        for i in idx:
            layer = masks.layers[i]
            out.append(torch.where(layer.mask, layer.original.abs(), -math.inf))
    return out


def apportion(quotas: Sequence[float], total: int, caps: Sequence[int]) -> list[int]:
    """Integers ``c_i ≤ caps[i]`` summing to ``total``, closest to the real ``quotas`` (largest remainder).

    Turns per-layer densities (ERK) into per-layer keep counts whose sum is exactly the target count.
    """
    if total > sum(caps) or total < 0:
        raise ValueError(f"cannot place {total} weights in {sum(caps)} slots")
    counts = [min(int(math.floor(q)), c) for q, c in zip(quotas, caps, strict=True)]
    rest = total - sum(counts)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), i))
    while rest != 0:
        moved = False
        for i in order:
            if rest > 0 and counts[i] < caps[i]:
                counts[i] += 1
                rest -= 1
                moved = True
            elif rest < 0 and counts[i] > 0:
                counts[i] -= 1
                rest += 1
                moved = True
            if rest == 0:
                break
        if not moved:  # pragma: no cover - excluded by the check above
            raise RuntimeError("apportion did not converge")
    return counts


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every non-mask buffer (BatchNorm running statistics) on exit.

    Scoring passes (SNIP, DiSparse) run the model in training mode on extra batches; like the official code,
    which scores a copy of the network, they must not leave a trace in the model that is then trained.
    """
    saved = {n: b.detach().clone() for n, b in unwrap(model).named_buffers() if not is_mask_key(n)}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, b in unwrap(model).named_buffers():
                if n in saved:
                    b.copy_(saved[n])


def all_reduce_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum scores over data-parallel workers (no-op in a single process).

    Each Ray Train / DDP worker scores its own slice of the setup batch; summing makes every worker take the
    same mask decision (the parameters are already identical across workers).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for t in tensors:
            torch.distributed.all_reduce(t)


def split_batch(batch: Mapping[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """Split a batch dict along dim 0 into ``parts`` (fewer if the batch is smaller)."""
    size = next(iter(batch.values())).shape[0]
    parts = max(1, min(parts, size))
    bounds = [size * i // parts for i in range(parts + 1)]
    return [{k: v[bounds[i]:bounds[i + 1]] for k, v in batch.items()} for i in range(parts)]


# -- a base for mask-based methods -------------------------------------------------------------------
class MaskedMethod(PruningMethod):
    """Installs the masks in ``setup`` and keeps stored pruned weights at zero after every step.

    Subclasses compute masks in ``setup`` (skipping the expensive part when ``ctx.extras["resuming"]``: the
    masks come back with the model's state_dict) and/or in ``after_optimizer_step``.
    """

    name: ClassVar[str] = "masked"

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.masks: MaskSet | None = None
        self.target_keep: int = 0
        #: host-side copy of the kept count, refreshed at prune steps (log_state never syncs for it)
        self.kept: int = 0

    @property
    def resuming(self) -> bool:
        return bool(self.ctx is not None and self.ctx.extras.get("resuming"))

    #: whether stored weights keep their values at pruned positions (``MaskSet.keep_pruned_values``)
    keep_pruned_values: bool = False

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        if ctx.target_sparsity is None:
            raise ValueError(f"method {self.name!r} needs a target sparsity")
        self.masks = MaskSet.install(ctx.model, keep_pruned_values=self.keep_pruned_values)
        self.target_keep = keep_count(self.masks.total, ctx.target_sparsity)
        self.kept = self.masks.total

    def after_optimizer_step(self, step: int) -> None:
        assert self.masks is not None
        self.masks.enforce_()

    def log_state(self) -> dict[str, float]:
        total = self.masks.total if self.masks is not None else 0
        return {"prune/density": self.kept / total if total else 1.0}

    def state_dict(self) -> dict[str, Any]:
        return {"kept": self.kept}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.kept = int(state.get("kept", self.kept))
