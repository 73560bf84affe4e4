"""Components, prunable weights, sparsity, parameter and FLOP counts (DESIGN §3.2).

Conventions shared by every pruning method, the engine and the results tables:

* Components are ``backbone`` and ``head/<task>`` (one sparsity and, for AdapMTL, one threshold each).
* Prunable weights are the ``weight`` of every ``nn.Conv2d`` / ``nn.Linear``; biases, norm layers and
  method state (thresholds, masks) are not.
* Sparsity counts exactly-zero *effective* weights, i.e. what the forward pass uses. Methods reparameterise
  weights with ``torch.nn.utils.parametrize``, so ``module.weight`` is always the effective weight; nothing
  here caches it.
* Overall sparsity is count-weighted over all prunable weights (not a mean of per-component ratios).

Sparsity is read every few training steps, so :func:`zero_counts` stays on the device (no host sync) and
:func:`sparsity_report` performs a single device-to-host transfer.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "PRUNABLE_TYPES",
    "components",
    "flops",
    "numel_per_component",
    "param_counts",
    "prunable_weights",
    "sparsity_report",
    "unwrap",
    "zero_counts",
]

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
_PARAMETRIZATIONS = "parametrizations"  # attribute torch.nn.utils.parametrize adds to a parametrized module

# module -> numel of its effective weight. Shapes are static, so this never goes stale; weak keys let
# models be garbage-collected.
_NUMEL_CACHE: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


def unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP / DataParallel / ``torch.compile`` wrappers so component names are stable."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def components(model: nn.Module) -> dict[str, nn.Module]:
    """``{"backbone": model.backbone, "head/<task>": head, ...}`` in task order."""
    model = unwrap(model)
    comps: dict[str, nn.Module] = {"backbone": model.backbone}
    for task, head in model.heads.items():
        comps[f"head/{task}"] = head
    return comps


def _component_prefix(component: str) -> str:
    """Qualified-name prefix of a component inside the model (``head/normal`` -> ``heads.normal``)."""
    return "backbone" if component == "backbone" else "heads." + component.split("/", 1)[1]


def prunable_weights(model: nn.Module) -> dict[str, list[tuple[str, nn.Module]]]:
    """``{component: [(qualified_name, module), ...]}`` for every Conv2d / Linear of each component.

    Names are relative to the (unwrapped) model, e.g. ``backbone.layer1.0.conv1``, so they are unique across
    components and match ``model.named_modules()``. Modules living inside a parametrization container (a
    method's own helper modules) are not model weights and are skipped. A parametrized Conv2d is still an
    ``nn.Conv2d`` (parametrize subclasses it), so it is found either way.
    """
    out: dict[str, list[tuple[str, nn.Module]]] = {}
    for comp, module in components(model).items():
        found = []
        for name, sub in module.named_modules(prefix=_component_prefix(comp)):
            if _PARAMETRIZATIONS in name.split("."):
                continue
            if isinstance(sub, PRUNABLE_TYPES):
                found.append((name, sub))
        out[comp] = found
    return out


def _model_device(model: nn.Module) -> torch.device:
    for p in unwrap(model).parameters():
        return p.device
    return torch.device("cpu")


def _zero_count(weight: torch.Tensor) -> torch.Tensor:
    return (weight == 0).sum()


def _layer_zero_counts(model: nn.Module) -> tuple[dict[str, list[torch.Tensor]], dict[str, list[int]]]:
    """Per component, each layer's zero count (0-d device tensor) and numel; no host sync.

    Runs under ``parametrize.cached()`` so an effective weight is computed once even if read twice.
    """
    zeros: dict[str, list[torch.Tensor]] = {}
    numels: dict[str, list[int]] = {}
    with torch.no_grad(), parametrize.cached():
        for comp, layers in prunable_weights(model).items():
            zeros[comp], numels[comp] = [], []
            for _, module in layers:
                weight = module.weight
                zeros[comp].append(_zero_count(weight))
                numels[comp].append(weight.numel())
                _NUMEL_CACHE[module] = weight.numel()
    return zeros, numels


def _sum_counts(counts: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    if not counts:
        return torch.zeros((), dtype=torch.int64, device=device)
    return torch.stack([c.to(device) for c in counts]).sum()


def zero_counts(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{component: number of exactly-zero effective prunable weights}`` as 0-d int64 device tensors.

    No ``.item()`` / ``.cpu()``: safe to call every step without stalling the device.
    """
    device = _model_device(model)
    zeros, _ = _layer_zero_counts(model)
    return {comp: _sum_counts(counts, device) for comp, counts in zeros.items()}


def numel_per_component(model: nn.Module) -> dict[str, int]:
    """``{component: number of prunable weights}`` (python ints; cached per layer since shapes are static)."""
    out: dict[str, int] = {}
    with torch.no_grad():
        for comp, layers in prunable_weights(model).items():
            total = 0
            for _, module in layers:
                if module not in _NUMEL_CACHE:
                    _NUMEL_CACHE[module] = module.weight.numel()
                total += _NUMEL_CACHE[module]
            out[comp] = total
    return out


def sparsity_report(model: nn.Module) -> dict[str, float]:
    """``{component: zeros/numel, ..., "overall": all zeros / all prunable weights}`` as fractions.

    Exactly one device-to-host transfer (the stacked per-component counts). A component without prunable
    weights reports 0.0.
    """
    device = _model_device(model)
    zeros, numels = _layer_zero_counts(model)
    comps = list(zeros)
    if not comps:
        return {"overall": 0.0}
    host = torch.stack([_sum_counts(zeros[c], device) for c in comps]).tolist()
    sizes = [sum(numels[c]) for c in comps]
    report = {c: (z / n if n else 0.0) for c, z, n in zip(comps, host, sizes)}
    total = sum(sizes)
    report["overall"] = sum(host) / total if total else 0.0
    return report


def _parametrized_numel(module: nn.Module) -> int:
    """Numel of the effective tensors a parametrized module exposes (e.g. its masked ``weight``)."""
    if not parametrize.is_parametrized(module):
        return 0
    return sum(getattr(module, name).numel() for name in getattr(module, _PARAMETRIZATIONS))


def param_counts(model: nn.Module) -> dict[str, int]:
    """Parameter counts of the *model* (Table 4): total and non-zero.

    ``total`` counts the model's own weights: every parametrized tensor once at its effective size, plus all
    other parameters (biases, BN affine, unparametrized weights). It excludes pruning-method state: whatever
    lives inside a parametrization container (the ``original`` tensors, thresholds or masks held by the
    parametrization modules) and 0-d parameters (scalar thresholds stored elsewhere on the model); a real
    layer weight is never 0-d. ``nonzero`` is ``total`` minus the exactly-zero effective prunable weights
    (biases and BN are counted as kept). Also returns ``prunable`` and ``prunable_nonzero``.
    """
    model = unwrap(model)
    total = 0
    with torch.no_grad(), parametrize.cached():
        for name, p in model.named_parameters():
            if _PARAMETRIZATIONS in name.split(".") or p.dim() == 0:
                continue
            total += p.numel()
        for module in model.modules():
            total += _parametrized_numel(module)
    zeros = zero_counts(model)
    zero_total = int(torch.stack(list(zeros.values())).sum().item()) if zeros else 0
    prunable = sum(numel_per_component(model).values())
    return {
        "total": total,
        "nonzero": total - zero_total,
        "prunable": prunable,
        "prunable_nonzero": prunable - zero_total,
    }


def _first_float_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def flops(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """Dense and effective-sparse FLOPs of one eval-mode forward of ``zeros(input_shape)``.

    ``input_shape`` includes the batch dimension, e.g. ``(1, 3, 321, 321)``. FLOPs come from
    ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as 2 FLOPs). Sparse FLOPs scale each
    Conv2d/Linear's FLOPs by the density of its effective weight; everything else the counter sees is kept
    unscaled. On the ``meta`` device weights have no values, so sparse == dense there.
    """
    model = unwrap(model)
    device = _model_device(model)
    x = torch.zeros(tuple(input_shape), device=device, dtype=_first_float_dtype(model))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    dense = int(counter.get_total_flops())
    if device.type == "meta":
        return dense, dense

    # FlopCounterMode keys modules by "<RootClass>.<qualified name>" (its ModuleTracker names the root module
    # by its class). A module called twice accumulates under one key, which is what we want.
    root = type(model).__name__
    per_module = counter.get_flop_counts()
    layers = [(n, m) for comp_layers in prunable_weights(model).values() for n, m in comp_layers]
    layer_flops = [sum(per_module.get(f"{root}.{name}", {}).values()) for name, _ in layers]
    zeros, numels = _layer_zero_counts(model)
    flat_numels = [n for comp in numels.values() for n in comp]
    flat_zeros = [z.to(device) for comp in zeros.values() for z in comp]
    host_zeros = torch.stack(flat_zeros).tolist() if flat_zeros else []
    sparse = float(dense - sum(layer_flops))
    for f, z, n in zip(layer_flops, host_zeros, flat_numels):
        sparse += f * (1.0 - z / n) if n else 0.0
    return dense, int(round(sparse))
