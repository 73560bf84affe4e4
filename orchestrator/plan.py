"""Grid expansion: a SweepSpec becomes dense references and tuning groups, every config validated.

Phase 1 trains one dense reference per (dataset, arch, seed): its validation metrics are the ΔT reference of
the tuning objective and its test metrics the reference of the tables. Phase 2 runs one Tune search per
(method, arch, sparsity, seed) group. Building every RunConfig here (with a representative value of every
searched parameter) is what makes "validated before Ray starts" true for names, types and ranges alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.spec import SpecError, SweepSpec
from search_spaces import check_param, representative, space_for


@dataclass(frozen=True)
class Reference:
    """The dense run of one (arch, seed); its metrics are the ΔT reference of the groups that share them."""

    id: str
    arch: str
    seed: int
    config: dict[str, Any]  # RunConfig kwargs
    run_key: str


@dataclass(frozen=True)
class Group:
    """One Tune search: a method at one sparsity on one (dataset, arch, seed)."""

    id: str
    method: str
    arch: str
    sparsity: float
    seed: int
    base: dict[str, Any]  # RunConfig kwargs without the searched parameters
    entry: str = ""  # the spec's key: the method name, or "method@variant" for ablation variants
    label: str | None = None  # the MLflow ``variant`` tag
    space: dict[str, Any] = field(default_factory=dict)  # param -> spec (searched groups only)
    samples: int = 1
    reference_id: str = ""

    @property
    def searched(self) -> bool:
        return bool(self.space)

    @property
    def budget(self) -> int:
        """Trials this group may run: its samples, or every combination under grid search."""
        if not self.space:
            return 1
        sizes = [_choices(v) for v in self.space.values()]
        if all(n is not None for n in sizes) and self.grid:
            total = 1
            for n in sizes:
                total *= n  # type: ignore[operator]
            return total
        return self.samples

    grid: bool = False


@dataclass(frozen=True)
class Plan:
    spec: SweepSpec
    references: list[Reference]
    groups: list[Group]
    #: problems that do not stop the sweep but make some of its rows meaningless (printed before Ray starts)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_trials(self) -> int:
        return len(self.references) + sum(g.budget for g in self.groups)

    def reference(self, group: Group) -> Reference:
        return next(r for r in self.references if r.id == group.reference_id)

    def describe(self) -> str:
        """The human-readable plan that ``--dry-run`` prints."""
        s, r = self.spec, self.spec.resources
        backend = "TorchTrainer" if r.uses_train else "direct (engine in the Tune trainable)"
        lines = [
            f"sweep {s.name}: dataset {s.dataset.name}, {len(self.references)} reference(s), "
            f"{len(self.groups)} group(s), {self.n_trials} trial(s)",
            f"resources per trial: {r.workers_per_trial} worker(s) x {r.cpus_per_worker:g} CPU"
            f"{f' + {r.gpus_per_worker:g} GPU' if r.gpus_per_worker else ''}; backend {backend}; "
            f"search {s.search.algorithm}, scheduler {s.search.scheduler}, "
            f"max_concurrent {s.search.max_concurrent or 'auto'}",
            "phase 1 (dense references):",
        ]
        lines[1:1] = [f"warning: {w}" for w in self.warnings]
        w = max([len(r.id) for r in self.references] + [len(g.id) for g in self.groups] + [20])
        for ref in self.references:
            lines.append(f"  {ref.id:<{w}} run_key {ref.run_key}")
        lines.append("phase 2 (groups):")
        for g in self.groups:
            what = f"{g.budget} trial(s) over {', '.join(sorted(g.space))}" if g.searched else "1 trial (fixed)"
            lines.append(f"  {g.id:<{w}} {what}")
        return "\n".join(lines)


def _choices(spec: Any) -> int | None:
    """Number of values of a choice/list parameter spec (None for continuous ones)."""
    if isinstance(spec, list | tuple):
        return len(spec)
    if isinstance(spec, dict) and spec.get("type") == "choice":
        return len(spec.get("values", []))
    return None


def _run_config_kwargs(spec: SweepSpec, arch: str, seed: int, method: str, params: dict[str, Any],
                       sparsity: float | None) -> dict[str, Any]:
    data = spec.dataset.model_dump(exclude_none=True)
    if not data.get("options"):
        data.pop("options", None)
    model = {"arch": arch, **spec.model.model_dump(exclude_none=True)}
    out = {"data": data, "model": model, "train": dict(spec.train), "method": method,
           "method_params": dict(params), "target_sparsity": sparsity, "seed": seed}
    metrics = spec.metrics.model_dump(exclude_none=True)
    if metrics:
        out["metrics"] = metrics
    return out


def make_run_config(kwargs: dict[str, Any]) -> Any:
    from trainers.config import RunConfig

    return RunConfig(**kwargs)


def _validated(kwargs: dict[str, Any], where: str) -> Any:
    from pydantic import ValidationError

    try:
        return make_run_config(kwargs)
    except ValidationError as exc:
        errs = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            errs.append(f"{loc}: {msg}" if loc else msg)
        raise SpecError(f"{where}: {'; '.join(errs)}") from None
    except (ValueError, ImportError) as exc:
        raise SpecError(f"{where}: {str(exc).strip().splitlines()[0]}") from None


def _fmt_sparsity(s: float) -> str:
    return f"{s:g}"


def build_plan(spec: SweepSpec) -> Plan:
    """Expand the grid and validate every run config; raises SpecError with one line on the first problem."""
    from trainers.methods import METHOD_REGISTRY

    for m in spec.methods:
        name, _, variant = m.partition("@")
        if name not in METHOD_REGISTRY:
            raise SpecError(f"methods.{m}: unknown method (known: {', '.join(sorted(METHOD_REGISTRY))})")
        if name == "dense" and variant:
            raise SpecError(f"methods.{m}: the dense reference has no variants")

    references: list[Reference] = []
    for arch in spec.architectures:
        for seed in spec.seeds:
            kwargs = _run_config_kwargs(spec, arch, seed, "dense", spec.methods.get("dense", _empty()).params,
                                        None)
            cfg = _validated(kwargs, f"reference {arch} seed {seed}")
            references.append(Reference(id=reference_id(spec, arch, seed), arch=arch, seed=seed, config=kwargs,
                                        run_key=cfg.run_key()))

    groups: list[Group] = []
    for entry in spec.pruning_methods():
        mspec = spec.methods[entry]
        method, _, variant = entry.partition("@")
        ms = space_for(method)
        fixed = {**ms.fixed, **mspec.params}
        space: dict[str, Any] = {}
        samples = mspec.samples
        search = mspec.search if mspec.searched else None
        if spec.search.budget == "equal":
            assert spec.search.trials_per_group is not None
            samples = spec.search.trials_per_group
            if mspec.searched and mspec.samples not in (1, samples):
                raise SpecError(f"methods.{entry}.samples {mspec.samples} contradicts search.budget 'equal' "
                                f"with trials_per_group {samples}: drop samples")
            search = None if samples == 1 else (search or ("default" if ms.space else None))
        if search is not None:
            space = dict(ms.space) if search == "default" else dict(search)  # type: ignore[arg-type]
            if not space:
                raise SpecError(f"methods.{entry}.search: the method has no search space (search_spaces/"
                                f"{method}.py); drop 'search' or give a space")
            space = {k: v for k, v in space.items() if k not in mspec.params}  # fixed in the spec wins
            for name, pspec in space.items():
                try:
                    check_param(name, pspec)
                except ValueError as exc:
                    raise SpecError(f"methods.{entry}.search: {exc}") from None
            if spec.search.algorithm == "grid":
                bad = [k for k, v in space.items() if not (isinstance(v, list | tuple) or
                                                           (isinstance(v, dict) and v.get("type") == "choice"))]
                if bad:
                    raise SpecError(f"methods.{entry}.search: grid search needs choice/list parameters, "
                                    f"not {', '.join(bad)}")
        for arch in spec.architectures:
            for sparsity in spec.sparsities:
                for seed in spec.seeds:
                    params = {**fixed, **{k: representative(v) for k, v in space.items()}}
                    kwargs = _run_config_kwargs(spec, arch, seed, method, params, sparsity)
                    _validated(kwargs, f"methods.{entry}")
                    base = _run_config_kwargs(spec, arch, seed, method, fixed, sparsity)
                    groups.append(Group(
                        id=f"{entry.replace('@', '.')}-{spec.dataset.name}-{arch}-sp{_fmt_sparsity(sparsity)}-seed{seed}",
                        method=method, arch=arch, sparsity=sparsity, seed=seed, base=base, space=space,
                        entry=entry, label=mspec.label or variant or None,
                        samples=samples if space else 1, reference_id=reference_id(spec, arch, seed),
                        grid=spec.search.algorithm == "grid",
                    ))
    return Plan(spec=spec, references=references, groups=groups, warnings=_equivalent_entries(spec))


def _equivalent_entries(spec: SweepSpec) -> list[str]:
    """Entries of one method (ablation variants) that resolve to the same effective configuration.

    Such rows train identically: an ablation whose "w/o X" row equals the full method measures nothing. The
    comparison uses ``PruningMethod.effective_params`` (inert parameters dropped), the searched space and its
    sample count.
    """
    import json

    from trainers.methods import method_class, validate_params

    seen: dict[str, str] = {}
    out = []
    for entry in spec.pruning_methods():
        method = entry.partition("@")[0]
        mspec = spec.methods[entry]
        fixed = {**space_for(method).fixed, **mspec.params}
        params = validate_params(method, fixed)
        search = mspec.search if mspec.searched else None
        key = json.dumps([method, method_class(method).effective_params(params), search,
                          mspec.samples if search else 1], sort_keys=True, default=str)
        if key in seen:
            out.append(f"methods.{entry} and methods.{seen[key]} resolve to the same effective configuration: "
                       "their rows would train identically")
        else:
            seen[key] = entry
    return out


def reference_id(spec: SweepSpec, arch: str, seed: int) -> str:
    """Ids name the dataset too (``dense-nyuv2-resnet34-seed0``, ``snip-nyuv2-resnet34-sp0.9-seed0``): a
    group id is the MLflow ``group`` tag, and runs of one group on two datasets must never look alike."""
    return f"dense-{spec.dataset.name}-{arch}-seed{seed}"


def _empty() -> Any:
    from orchestrator.spec import MethodSpec

    return MethodSpec()
