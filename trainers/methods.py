"""Pruning-method interface and registry (DESIGN.md §3.3).

A method never owns the training loop: the engine calls its hooks at fixed points. That keeps every method
on the same trajectory (data order, optimizer, schedule, evaluation), which is what makes the paper's
comparisons fair, and it lets the same loop run unchanged inside a Ray Train worker.

Adding a method = one module with a ``PruningMethod`` subclass + one line in ``METHOD_REGISTRY``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from trainers.compute import ComputeLedger

#: name -> "module:Class". One line per method; imported lazily so a broken optional method cannot break
#: the others, and so spec validation can list names without importing torch-heavy modules.
METHOD_REGISTRY: dict[str, str] = {
    "dense": "trainers.dense:Dense",
    "adapmtl": "trainers.adapmtl:AdapMTL",
    "snip": "baselines.snip:SNIP",
    "lth": "baselines.lth:LTH",
    "imp": "baselines.imp:IMP",
    "disparse": "baselines.disparse:DiSparse",
}


class MethodParams(BaseModel):
    """Base of every method's parameter class: typed, validated, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # inf/nan: one clear error


@dataclass(frozen=True)
class MethodMetadata:
    """What the results tables need to cite a method (Composer-style metadata)."""

    title: str
    year: int
    bibtex_key: str
    bibtex: str = ""
    display_name: str = ""


@dataclass
class MethodContext:
    """Everything a method may use in ``setup``; built by the engine.

    ``next_batch`` yields training batches already on the device (the same stream the loop uses, so a method
    that consumes batches in setup — SNIP, DiSparse-static — shifts the data order the same way every run).
    ``task_losses(outputs, batch)`` returns the unweighted per-task losses. ``make_optimizer(params)`` and
    ``make_scheduler(optimizer)`` build the run's optimizer/schedule so a method that trains in setup (LTH's
    dense phase) uses the same settings. ``dense_checkpoint`` points at the matching dense reference's final
    weights when the orchestrator has one. ``dataset`` names the dataset, for methods whose official defaults
    differ per dataset (DiSparse). ``compute`` is the run's ledger: the engine counts optimizer steps, methods
    add their scoring passes and reused steps (``trainers.compute``).
    """

    model: nn.Module
    tasks: list[str]
    device: torch.device
    target_sparsity: float | None
    total_iterations: int
    next_batch: Callable[[], dict[str, torch.Tensor]]
    task_losses: Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]
    make_optimizer: Callable[[Any], torch.optim.Optimizer]
    make_scheduler: Callable[[torch.optim.Optimizer], Any]
    train_phase: Callable[..., None]
    workdir: Path
    seed: int = 0
    dense_checkpoint: Path | None = None
    dataset: str = ""
    compute: ComputeLedger = field(default_factory=ComputeLedger)
    extras: dict[str, Any] = field(default_factory=dict)


class PruningMethod:
    """Base class: the dense behaviour. Subclasses override only the hooks they need."""

    name: ClassVar[str] = "base"
    Params: ClassVar[type[MethodParams]] = MethodParams
    metadata: ClassVar[MethodMetadata | None] = None
    #: whether the method needs a target sparsity (every pruning method does; dense does not)
    requires_target: ClassVar[bool] = True

    def __init__(self, params: MethodParams | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.ctx: MethodContext | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    @classmethod
    def effective_params(cls, params: MethodParams) -> dict[str, Any]:
        """What a run with ``params`` computes, inert parameters dropped: two configurations with equal
        effective params train identically (the spec warns when two ablation variants do)."""
        return params.model_dump(mode="json")

    # -- hooks (DESIGN.md §3.3) -------------------------------------------------------------------
    def setup(self, ctx: MethodContext) -> None:
        """Before training: install parametrizations, compute masks, remember the initialization."""
        self.ctx = ctx

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The engine hands over the run's optimizer once it exists (after ``setup``), for methods that
        must act on its state around a step (AdapMTL keeps frozen thresholds' Adam state unchanged)."""
        self.optimizer = optimizer

    def before_forward(self, step: int, batch: Mapping[str, torch.Tensor]) -> None:
        """Before the forward of ``step`` with that step's training batch (DiSparse's mask updates score the
        iteration's own batch, as the official code does)."""

    def task_weights(self, step: int, task_losses: Mapping[str, torch.Tensor]) -> Mapping[str, Any]:
        """Weight of each task loss at this step (floats or 0-d device tensors; never force a host sync)."""
        return {t: 1.0 for t in task_losses}

    def before_optimizer_step(self, step: int) -> None:
        """After backward, before ``optimizer.step()``: gradient masking, threshold freezing."""

    def after_optimizer_step(self, step: int) -> None:
        """After ``optimizer.step()``: prune schedules, mask updates, rewinds."""

    def log_state(self) -> dict[str, float]:
        """Scalars worth plotting (thresholds, β, ...). Called only at logging intervals."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-trial (besides the model/optimizer, which the engine saves)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``state_dict``; called after ``setup`` on resume."""

    def extra_artifacts(self) -> dict[str, Any]:
        """JSON-serialisable summary stored with the run (e.g. final thresholds, schedule)."""
        return self.log_state()


def method_class(name: str) -> type[PruningMethod]:
    """Resolve a registered method name to its class (one clear error for unknown names)."""
    try:
        target = METHOD_REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(METHOD_REGISTRY))
        raise ValueError(f"unknown method {name!r} (known: {known})") from None
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def validate_params(name: str, params: Mapping[str, Any] | None) -> MethodParams:
    """Validate ``params`` against the method's Params class; errors become one line naming the key."""
    cls = method_class(name)
    try:
        return cls.Params(**dict(params or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"invalid parameters for method {name!r}: {problems}") from None


def build_method(name: str, params: Mapping[str, Any] | None = None) -> PruningMethod:
    """Instantiate a registered method from its (validated) parameters."""
    return method_class(name)(validate_params(name, params))


def method_metadata(name: str) -> dict[str, Any]:
    """Title/year/BibTeX key of a method for citing it in tables; falls back to the name."""
    try:
        meta = method_class(name).metadata
    except (ValueError, ImportError):
        meta = None
    if meta is None:
        return {"title": name, "year": None, "bibtex_key": None, "bibtex": "", "display_name": name}
    return {
        "title": meta.title,
        "year": meta.year,
        "bibtex_key": meta.bibtex_key,
        "bibtex": meta.bibtex,
        "display_name": meta.display_name or name,
    }


def iter_registered() -> Iterator[str]:
    yield from METHOD_REGISTRY
