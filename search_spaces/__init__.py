"""Search spaces per method: ``space_for(method)`` is what the orchestrator tunes over.

Contract of a method's module ``search_spaces/<method>.py`` (all optional; a missing module = no search):

* ``FIXED: dict[str, Any]`` (or ``fixed() -> dict``): parameter values every trial of the method uses unless
  the sweep spec overrides them (e.g. AdapMTL's defaults from the supplement).
* ``space() -> dict[str, Any]`` (or ``SPACE``): the tunable parameters. Each value is either a Ray Tune
  domain (``tune.loguniform(1e-3, 1e-1)``), a plain list (a categorical choice), or a YAML-friendly dict:
  ``{"type": "uniform"|"loguniform", "low": a, "high": b}``, ``{"type": "int", "low": a, "high": b,
  "log": false}``, ``{"type": "choice", "values": [...]}``. Plain dicts are what sweep specs use too, so a
  spec can replace a space without Python.

Keys are method parameter names (validated against the method's Params class before Ray starts).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PARAM_TYPES = ("uniform", "loguniform", "int", "choice")


@dataclass(frozen=True)
class MethodSpace:
    """Fixed defaults and the tunable space of one method (both possibly empty)."""

    fixed: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)


def space_for(method: str) -> MethodSpace:
    """Load ``search_spaces.<method>``; a method without a module (or ``dense``) has an empty space."""
    try:
        module = importlib.import_module(f"search_spaces.{method}")
    except ModuleNotFoundError as exc:
        if exc.name != f"search_spaces.{method}":
            raise
        return MethodSpace()
    fixed = getattr(module, "FIXED", None)
    if fixed is None and callable(getattr(module, "fixed", None)):
        fixed = module.fixed()
    space = getattr(module, "SPACE", None)
    if callable(getattr(module, "space", None)):
        space = module.space()
    return MethodSpace(fixed=dict(fixed or {}), space=dict(space or {}))


def check_param(name: str, spec: Any) -> None:
    """One-line ValueError for a malformed parameter spec (bad bounds, unknown type, empty choice)."""
    if _is_tune_domain(spec):
        return
    if isinstance(spec, list | tuple):
        if not spec:
            raise ValueError(f"search parameter {name!r}: empty choice list")
        return
    if not isinstance(spec, Mapping):
        raise ValueError(f"search parameter {name!r}: expected a dict with 'type', a list or a Tune domain")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise ValueError(f"search parameter {name!r}: type must be one of {', '.join(PARAM_TYPES)}, got {kind!r}")
    extra = set(spec) - {"type", "low", "high", "log", "values"}
    if extra:
        raise ValueError(f"search parameter {name!r}: unknown keys {sorted(extra)}")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"search parameter {name!r}: choice needs a non-empty 'values' list")
        return
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise ValueError(f"search parameter {name!r}: 'low' and 'high' must be finite numbers")
    if not low < high:
        raise ValueError(f"search parameter {name!r}: low ({low}) must be < high ({high})")
    if (kind == "loguniform" or spec.get("log")) and low <= 0:
        raise ValueError(f"search parameter {name!r}: log scale needs low > 0, got {low}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ValueError(f"search parameter {name!r}: int bounds must be integers")


def to_tune(spec: Any) -> Any:
    """A parameter spec as a Ray Tune domain (OptunaSearch converts Tune domains to Optuna distributions)."""
    from ray import tune

    if _is_tune_domain(spec):
        return spec
    if isinstance(spec, list | tuple):
        return tune.choice(list(spec))
    kind = spec["type"]
    if kind == "choice":
        return tune.choice(list(spec["values"]))
    if kind == "uniform":
        return tune.uniform(float(spec["low"]), float(spec["high"]))
    if kind == "loguniform":
        return tune.loguniform(float(spec["low"]), float(spec["high"]))
    low, high = int(spec["low"]), int(spec["high"])
    # Tune's randint excludes the upper bound; specs are inclusive like Optuna's suggest_int.
    return tune.lograndint(low, high + 1) if spec.get("log") else tune.randint(low, high + 1)


def describe(spec: Any) -> str:
    """A stable text of a parameter spec (Tune domains have no value-based repr), for identities/hashes."""
    if _is_tune_domain(spec):
        sampler = getattr(spec, "sampler", None)
        parts = [type(spec).__name__, getattr(spec, "lower", None), getattr(spec, "upper", None),
                 getattr(spec, "categories", None), type(sampler).__name__ if sampler is not None else None,
                 getattr(sampler, "base", None), getattr(sampler, "q", None)]
        return repr(parts)
    return repr(spec)


def representative(spec: Any) -> Any:
    """A value inside the spec's domain (its lower end), used to validate parameter names and types early."""
    if _is_tune_domain(spec):
        lower = getattr(spec, "lower", None)
        if lower is not None:
            return lower
        categories = getattr(spec, "categories", None)
        return categories[0] if categories else spec.sample()
    if isinstance(spec, list | tuple):
        return spec[0]
    if spec["type"] == "choice":
        return spec["values"][0]
    return int(spec["low"]) if spec["type"] == "int" else float(spec["low"])


def _is_tune_domain(spec: Any) -> bool:
    try:
        from ray.tune.search.sample import Domain
    except ImportError:  # pragma: no cover - ray is a hard dependency
        return False
    return isinstance(spec, Domain)
