"""SweepSpec: the YAML a user writes (DESIGN §3.8), validated whole before Ray or any compute starts.

Why validate everything up front: a typo in the last method of a 500-trial sweep should cost a second, not
the hours spent on the trials before it (torchtune-style config validation). Every problem is one line
naming the offending key; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import math
import os
import re
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Keys of a method entry that belong to the orchestrator; every other key is a fixed method parameter.
METHOD_RESERVED = ("search", "samples", "params", "label")


class SpecError(ValueError):
    """A malformed sweep spec or an unusable environment (one line; exit code 2)."""


class _Strict(BaseModel):
    # allow_inf_nan=False: pydantic would otherwise coerce "inf"/"nan" strings into floats
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatasetSpec(_Strict):
    name: str = "synthetic_scenes"
    root: str | None = None
    tasks: list[str] | None = None
    resolution: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(_Strict):
    """Model options shared by every architecture of the sweep (width < 1 = CPU-sized variants)."""

    width: float = Field(default=1.0, gt=0, le=4)
    head_channels: int | None = Field(default=None, gt=0)
    dropout: float = Field(default=0.5, ge=0, lt=1)


class MethodSpec(_Strict):
    """One method of the sweep: fixed parameters plus an optional search over ``search_spaces/<method>``.

    The key in ``methods`` is the method name, or ``name@variant`` for several configurations of one method
    (ablations): each variant is its own group and its runs carry the MLflow tag ``variant`` (``label`` or the
    part after ``@``).

    ``search``: ``None``/``"none"`` = no search (one trial per group with the fixed parameters),
    ``"default"`` = the method's space from search_spaces, or a dict ``{param: spec}`` replacing it.
    """

    params: dict[str, Any] = Field(default_factory=dict)
    search: None | Literal["none", "default"] | dict[str, Any] = None
    samples: int = Field(default=1, ge=1, le=10_000)
    label: str | None = None

    @property
    def searched(self) -> bool:
        return self.search not in (None, "none")


class SearchSpec(_Strict):
    """How each group is tuned, and the objective.

    Objective (reported to Tune as ``objective``) = ``metric`` − ``sparsity_penalty`` × shortfall, where
    shortfall = max(0, target − achieved − ``sparsity_tolerance``) in percentage points of sparsity. A trial
    that stays denser than asked would otherwise win for free; being sparser than the target is not
    penalised (it is only harder). With the default penalty of 1.0, each point of sparsity missed costs one
    point of ΔT.
    """

    algorithm: Literal["optuna", "random", "grid"] = "optuna"
    #: ``per_method``: each method entry's own ``search``/``samples``; ``equal``: every method that has a
    #: search space gets ``trials_per_group`` trials over it (1 = every method with its defaults, no search),
    #: so no method wins by having been tuned more. Every table caption states the budget per method.
    budget: Literal["per_method", "equal"] = "per_method"
    trials_per_group: int | None = Field(default=None, ge=1, le=10_000)
    metric: str = "val/delta_t"
    mode: Literal["max", "min"] = "max"
    scheduler: Literal["none", "asha"] = "none"
    max_concurrent: int | None = Field(default=None, ge=1)
    grace_period: int | None = Field(default=None, gt=0, description="ASHA grace period in steps")
    reduction_factor: float = Field(default=3.0, gt=1)
    sparsity_penalty: float = Field(default=1.0, ge=0)
    sparsity_tolerance: float = Field(default=0.005, ge=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _equal_needs_a_count(self) -> SearchSpec:
        if self.budget == "equal" and self.trials_per_group is None:
            raise ValueError("search.budget 'equal' needs search.trials_per_group (1 = defaults, no search)")
        if self.budget == "per_method" and self.trials_per_group is not None:
            raise ValueError("search.trials_per_group applies to search.budget 'equal' only")
        return self


class ResourcesSpec(_Strict):
    """Per trial. ``backend``: ``auto`` runs single-worker CPU trials directly in the Tune trainable (no Train
    start-up cost) and everything else on a TorchTrainer; ``train`` forces the TorchTrainer path."""

    workers_per_trial: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1, gt=0)
    gpus_per_worker: float = Field(default=0, ge=0)
    max_failures: int = Field(default=1, ge=-1)
    backend: Literal["auto", "direct", "train"] = "auto"

    @model_validator(mode="after")
    def _direct_is_single_cpu(self) -> ResourcesSpec:
        if self.backend == "direct" and (self.workers_per_trial > 1 or self.gpus_per_worker > 0):
            raise ValueError("resources.backend 'direct' runs one CPU worker; use 'auto' or 'train'")
        return self

    @property
    def uses_train(self) -> bool:
        if self.backend == "auto":
            return self.workers_per_trial > 1 or self.gpus_per_worker > 0
        return self.backend == "train"


class TrackingSpec(_Strict):
    uri: str | None = None


class RaySpec(_Strict):
    address: str | None = None
    storage: str | None = Field(default=None, description="Tune/Train storage: local dir or pyarrow URI")
    num_cpus: int | None = Field(default=None, gt=0)
    dashboard: bool = Field(default=False, description="start the Ray dashboard (127.0.0.1) with an embedded "
                            "Ray; off by default: two more processes on a small machine, ~1.5 s of start-up")


class MetricsSpec(_Strict):
    """Metric conventions (``trainers.conventions``): a named set — default the dataset's (``official`` on
    NYUv2/Tiny-Taskonomy, ``standard`` on synthetic scenes) — plus optional overrides of single knobs. They
    are logged with every run, enter its identity, and a table never mixes runs evaluated differently."""

    convention: Literal["official", "standard"] | None = None
    miou_absent: Literal["ignore", "present", "zero"] | None = None
    delta_nonpositive: Literal["outside", "official"] | None = None
    average: Literal["batch", "pooled"] | None = None
    inclusive: bool | None = None
    normals: Literal["official_raw", "decoded"] | None = None


class SweepSpec(_Strict):
    name: str
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    architectures: list[str] = Field(default_factory=lambda: ["resnet34"])
    model: ModelSpec = Field(default_factory=ModelSpec)
    methods: dict[str, MethodSpec]
    sparsities: list[float] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0])
    train: dict[str, Any] = Field(default_factory=dict)
    search: SearchSpec = Field(default_factory=SearchSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    workdir: str | None = None
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", v):
            raise ValueError(f"name {v!r} must be 1-100 characters of letters, digits, '_', '.', '-'")
        return v

    @field_validator("methods", mode="before")
    @classmethod
    def _split_method_entries(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for name, entry in v.items():
            entry = {} if entry is None else entry
            if not isinstance(entry, dict):
                raise ValueError(f"method {name!r}: expected a mapping of parameters, got {entry!r}")
            reserved = {k: entry[k] for k in METHOD_RESERVED if k in entry}
            fixed = {k: val for k, val in entry.items() if k not in METHOD_RESERVED}
            params = {**dict(reserved.pop("params", None) or {}), **fixed}
            out[name] = {**reserved, "params": params}
        return out

    @field_validator("architectures", "seeds", "methods")
    @classmethod
    def _non_empty(cls, v: Any, info: Any) -> Any:
        if not v:
            raise ValueError(f"{info.field_name} is empty: the grid would have no trials")
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError(f"{info.field_name} has duplicates: {v}")
        return v

    @field_validator("sparsities")
    @classmethod
    def _sparsities(cls, v: list[float]) -> list[float]:
        for s in v:
            if not 0.0 < s < 1.0:
                raise ValueError(f"sparsity {s} is outside (0, 1)")
        if len(set(v)) != len(v):
            raise ValueError(f"sparsities has duplicates: {v}")
        return v

    @model_validator(mode="after")
    def _pruning_needs_sparsities(self) -> SweepSpec:
        pruning = [m for m in self.methods if m != "dense"]
        if pruning and not self.sparsities:
            raise ValueError(f"sparsities is empty but methods {pruning} need a target: the grid would be empty")
        return self

    def pruning_methods(self) -> list[str]:
        return [m for m in self.methods if m != "dense"]


# -- loading ---------------------------------------------------------------------------------------------
def _one_line_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def non_finite(data: Any, path: str = "") -> str | None:
    """The dotted path of the first inf/nan float anywhere in ``data`` (YAML ``.inf``/``.nan``), or None.

    Checked on the raw data, so free-form sections (``train``, method parameters, search spaces, dataset
    options) are covered as well as typed fields: a non-finite learning rate or bound only shows up as a
    NaN loss, hours later.
    """
    if isinstance(data, float) and not math.isfinite(data):
        return path or "value"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = non_finite(value, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def parse_spec(data: Any, source: str = "spec") -> SweepSpec:
    """Structure-level validation (types, ranges, empty grids); names are checked by ``orchestrator.plan``."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a YAML mapping at the top level")
    bad = non_finite(data)
    if bad:
        raise SpecError(f"{source}: {bad}: must be a finite number (inf and nan are not allowed)")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_one_line_validation(exc)}") from None


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: invalid YAML {yaml_error_text(exc)}") from None
    return parse_spec(data, str(p))


def yaml_error_text(exc: Exception) -> str:
    """One line with the real location of a YAML error: the problem's mark (where parsing failed), not the
    context's (where the enclosing block began, often line 1), e.g. ``at line 4, column 2: expected ...``."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem or mark is None:
        lines = str(exc).strip().splitlines()
        return f": {lines[0] if lines else type(exc).__name__}"
    text = f"at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and cmark is not None and (cmark.line, cmark.column) != (mark.line, mark.column):
        text += f" ({context} that starts at line {cmark.line + 1}, column {cmark.column + 1})"
    elif context:
        text += f" ({context})"
    return text


def dump_spec(spec: SweepSpec) -> str:
    """YAML of a spec (the sweep directory keeps a copy so ``resume`` needs only the sweep name)."""
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


# -- environment checks (before Ray starts) ------------------------------------------------------------
def check_dataset_root(spec: SweepSpec) -> None:
    """A real dataset needs a readable root; a synthetic one's (optional) cache dir must be creatable."""
    root = spec.dataset.root
    if spec.dataset.name == "synthetic_scenes":
        if root:
            p = Path(root).expanduser()
            parent = p if p.exists() else next((a for a in p.parents if a.exists()), Path("/"))
            if not os.access(parent, os.W_OK | os.X_OK) and not (p.exists() and os.access(p, os.R_OK)):
                raise SpecError(f"dataset.root {root} is not writable (synthetic scenes cache)")
        return
    if not root:
        raise SpecError(f"dataset.root is required for dataset {spec.dataset.name!r}")
    p = Path(root).expanduser()
    if not p.is_dir():
        raise SpecError(f"dataset.root {root} does not exist or is not a directory")
    if not os.access(p, os.R_OK | os.X_OK):
        raise SpecError(f"dataset.root {root} is not readable")
    try:
        from trainers.data import build_dataset

        build_dataset(spec.dataset.name, "train", tasks=spec.dataset.tasks, root=str(p),
                      resolution=spec.dataset.resolution, augment=False, seed=0, **spec.dataset.options)
    except ImportError:
        return
    except (ValueError, OSError) as exc:
        raise SpecError(f"dataset.root {root}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from None


def parse_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``ray://host:port`` or ``http://host:port`` → (host, port)."""
    if "://" not in address:
        address = f"tcp://{address}"
    u = urlparse(address)
    if not u.hostname:
        raise SpecError(f"cannot parse address {address!r}")
    try:
        port = u.port or default_port
    except ValueError:
        raise SpecError(f"cannot parse address {address!r}") from None
    return u.hostname, port


def check_tcp(address: str, default_port: int, what: str, timeout: float = 3.0) -> None:
    """Fail in one line when nothing listens at ``address`` (a Ray GCS, dashboard or MLflow server)."""
    host, port = parse_host_port(address, default_port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise SpecError(f"{what} {address} is unreachable: {exc.strerror or exc}") from None


def check_ray_address(address: str | None) -> None:
    if address in (None, "", "local", "auto"):
        return
    check_tcp(address, 10001 if address.startswith("ray://") else 6379, "Ray address")


def check_tracking(uri: str) -> None:
    """Reachability of the MLflow store: a TCP probe for servers (fast), a real query for everything."""
    from orchestrator import tracking

    if uri.startswith(("http://", "https://")):
        check_tcp(uri, 443 if uri.startswith("https") else 80, "MLflow tracking URI")
    if uri.startswith("sqlite:///"):
        parent = Path(uri[len("sqlite:///"):]).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpecError(f"MLflow tracking URI {uri} is unusable: {exc.strerror or exc}") from None
    try:
        tracking.check_reachable(uri)
    except ConnectionError as exc:
        raise SpecError(str(exc)) from None
