"""The paper's tables as DataFrames: comparison (Tables 1–2), tasks (3), cost (4), ablation (5), sweep (Fig. 4).

Every table is built the same way so that the numbers mean the same thing everywhere:
1. score each finished run: ΔT recomputed from its test metrics against the dense reference of the same
   (dataset, arch, seed) — or the seed-averaged reference when asked — never read back from a logged value;
   runs evaluated under different metric conventions are refused (``results.disclosure``);
2. per (method, variant, target sparsity, seed) keep the trial the tuner would pick: best ``val/delta_t``
   (the test split never selects; the latest run breaks ties);
3. aggregate over seeds: mean, sample std and n, keeping the per-seed values for paired statistics.
A :class:`Table` holds means, stds, n, the per-seed values and what "best" means per column; which cells are
marked best or tied follows ``results.stats`` (paired 95 % intervals over seeds), and rows that missed their
sparsity target are never ranked. Every caption states the conventions, n, the ranking rule, the tuning
budget and the training compute. ``results.render`` turns a table into LaTeX / Markdown / CSV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from results import schema as S
from results.collect import METRIC_COL, PARAM_COL, metric_col
from results.disclosure import (
    achieved_points,
    budget_text,
    check_conventions,
    compute_text,
    conventions_text,
    is_off_target,
    join,
    numerics_text,
    ranking_text,
    seeds_text,
)
from results.display_names import (  # noqa: F401  (re-exported: the one display-name mapping)
    ARCH_LABELS,
    DATASET_LABELS,
    METHOD_LABELS,
    METRIC_LABELS,
    TASK_LABELS,
    method_name,
)
from results.method_registry import method_metadata, param_defaults
from results.scores import (
    MissingReferenceError,
    builtin_directions,
    delta_t,
    reference_rows,
    row_metrics,
)

KINDS: tuple[str, ...] = ("comparison", "sweep", "tasks", "ablation", "cost")
#: row order: the baseline, the paper's baselines in its order, anything else, then AdapMTL ("ours") last.
METHOD_ORDER: tuple[str, ...] = ("dense", "snip", "lth", "imp", "disparse")
LAST_METHODS: tuple[str, ...] = ("adapmtl",)
#: achieved sparsity is shown next to the target when they differ by more than this (fraction).
SPARSITY_TOLERANCE = 0.001
UP, DOWN = "↑", "↓"
#: the sparsity of the paper's Tables 1–3; the default when a sweep has several covered equally well
PAPER_SPARSITY = 0.9
DT_PREFIX = "dt/"

TASK_ORDER: tuple[str, ...] = tuple(TASK_LABELS)


@dataclass
class Table:
    """A rendered-to-be table: numeric means plus everything the renderers need to typeset it."""

    kind: str
    values: pd.DataFrame
    std: pd.DataFrame
    n: pd.Series
    better: dict[Any, str | None]
    caption: str
    label: str
    convention: str
    decimals: dict[Any, int] = field(default_factory=dict)
    signed: set[Any] = field(default_factory=set)
    reference_rows: set[Any] = field(default_factory=set)
    best_within: str | None = None  # index level inside which "best" is decided (sweep/cost: per arch)
    citations: dict[Any, str] = field(default_factory=dict)  # row label → BibTeX key
    bibtex: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)  # BibTeX key → "Title (year)"
    notes: list[str] = field(default_factory=list)
    #: per-seed values: index (row position, seed), columns as ``values`` (paired statistics, CIs)
    per_seed: pd.DataFrame | None = None
    #: cells never ranked (their row or cell missed the sparsity target); same shape as ``values``
    ineligible: pd.DataFrame | None = None
    #: per row position: "† 78.8%"-style marker of an off-target row (achieved overall sparsity)
    row_marks: dict[int, str] = field(default_factory=dict)
    #: per row position: 95 % CI (low, high) of the overall ΔT over seeds (None below 2 seeds)
    ci: dict[int, tuple[float, float]] = field(default_factory=dict)
    #: per (row, column) position: a marker typeset after the value ("†": the cell missed its target)
    cell_marks: dict[tuple[int, int], str] = field(default_factory=dict)
    conventions: str | None = None

    @property
    def marks(self) -> pd.DataFrame:
        """Per cell "best", "tied", "single" or "" (see ``results.stats.rank_column``). The dense reference
        rows compete for nothing (they are the reference), nor do cells in ``ineligible``."""
        from results.stats import rank_column

        marks = pd.DataFrame("", index=range(len(self.values)), columns=self.values.columns)
        refs = self.values.index.isin(list(self.reference_rows))
        groups = (self.values.index.get_level_values(self.best_within) if self.best_within
                  else pd.Index(["all"] * len(self.values)))
        for j, col in enumerate(self.values.columns):
            direction = self.better.get(col)
            if direction is None:
                continue
            for g in pd.unique(groups):
                rows = [i for i in range(len(self.values)) if groups[i] == g and not refs[i]
                        and pd.notna(self.values.iat[i, j])
                        and not (self.ineligible is not None and bool(self.ineligible.iat[i, j]))]
                samples = {i: self._samples(i, j) for i in rows}
                for i, mark in rank_column(samples, direction, rows, self.decimals.get(col, 2)).items():
                    marks.iat[i, j] = mark
        marks.index = self.values.index
        return marks

    def _samples(self, i: int, j: int) -> dict[Any, float]:
        if self.per_seed is None or i not in self.per_seed.index.get_level_values(0):
            return {0: float(self.values.iat[i, j])}
        sub = self.per_seed.xs(i, level=0).iloc[:, j]
        return {s: float(v) for s, v in sub.items() if pd.notna(v)}

    @property
    def best(self) -> pd.DataFrame:
        """Boolean frame of the cells typeset in bold (significantly best, or best of a single seed)."""
        return self.marks.isin(["best", "single"])


# -- metadata -------------------------------------------------------------------------------------------
def method_info(name: str) -> dict[str, Any]:
    """Display name and citation of a method from the registry metadata (falls back to the name); read
    through :mod:`results.method_registry`, so a table does not import torch."""
    meta = method_metadata(name)
    display = method_name(name)  # the one display-name rule (results.display_names)
    return {
        "display": display,
        "bibtex_key": meta.get("bibtex_key") or None,
        "bibtex": meta.get("bibtex") or "",
        "title": meta.get("title") or display,
        "year": meta.get("year"),
    }


def method_sort_key(name: str) -> tuple[int, int, str]:
    if name in METHOD_ORDER:
        return (0, METHOD_ORDER.index(name), name)
    if name in LAST_METHODS:
        return (2, LAST_METHODS.index(name), name)
    return (1, 0, name)


def task_label(task: str, i: int | None = None) -> str:
    long = TASK_LABELS.get(task, (task.replace("_", " "), task))[0]
    return f"T{i}: {long}" if i is not None else long


def metric_label(metric: str, direction: str) -> str:
    return f"{METRIC_LABELS.get(metric, metric)} {UP if direction == S.DIRECTION_HIGHER else DOWN}"


# -- scoring --------------------------------------------------------------------------------------------
def _test_columns(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(column, task, metric) of every test metric a task is scored on (auxiliary metrics left out)."""
    out = []
    for col in df.columns:
        if col.startswith(METRIC_COL):
            parsed = S.parse_test_metric(col[len(METRIC_COL):])
            if parsed and parsed[1] not in S.AUX_METRICS:
                out.append((col, *parsed))
    return out


def _row_directions(row: pd.Series, metrics: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    tag = row.get(f"tags.{S.TAG_DIRECTIONS}")
    overrides = S.directions_from_tag(tag) if isinstance(tag, str) and tag else None
    return builtin_directions({t: list(m) for t, m in metrics.items()}, overrides)


def score_runs(df: pd.DataFrame, convention: str = "paper", average_seeds: bool = False) -> pd.DataFrame:
    """Finished trial/reference runs with test metrics, plus ``dt/<task>`` and ``dt/overall`` columns.

    References are matched by (dataset, arch, seed); ``average_seeds`` uses the mean of all seeds'
    references instead. A run without its reference raises :class:`MissingReferenceError`.
    """
    test_cols = _test_columns(df)
    cols = [c for c, _, _ in test_cols]
    if not cols:
        raise ValueError("no run has test metrics (test/<task>/<metric>); nothing to tabulate")
    runs = df[df[S.TAG_ROLE].isin([S.ROLE_TRIAL, S.ROLE_REFERENCE]) & df[cols].notna().any(axis=1)].copy()
    if runs.empty:
        raise ValueError("no finished trial or reference run with test metrics")
    conventions = check_conventions(runs)
    runs[S.TAG_VARIANT] = runs[S.TAG_VARIANT].where(runs[S.TAG_VARIANT].notna(), "")
    refs: dict[tuple[Any, ...], dict[str, dict[str, float]]] = {}
    for (dataset, arch), _ in runs.groupby([S.TAG_DATASET, S.TAG_ARCH], dropna=False):
        rr = reference_rows(df, dataset, arch).sort_values("end_time", na_position="first")
        latest = rr.groupby(S.TAG_SEED, dropna=False).tail(1)
        per_seed = {seed: row_metrics(r) for seed, (_, r) in zip(latest[S.TAG_SEED], latest.iterrows())}
        for seed, m in per_seed.items():
            refs[(dataset, arch, seed)] = m
        if per_seed:
            refs[(dataset, arch, "mean")] = _mean_metrics(list(per_seed.values()))
    out: dict[str, list[float]] = {}
    for i, (_, row) in enumerate(runs.iterrows()):
        key = (row[S.TAG_DATASET], row[S.TAG_ARCH], "mean" if average_seeds else row[S.TAG_SEED])
        ref = refs.get(key)
        if ref is None:
            what = "any seed" if average_seeds else f"seed={row[S.TAG_SEED]}"
            raise MissingReferenceError(
                f"no dense reference run for dataset={key[0]} arch={key[1]} {what} (needed by run "
                f"{row['run_id']}, method={row[S.TAG_METHOD]}); run the sweep's reference phase"
                + ("" if average_seeds else " or use the seed-averaged reference (--average-seeds)")
            )
        metrics = {t: {m: float(row[c]) for c, tt, m in test_cols if tt == t and pd.notna(row[c])}
                   for t in ref}
        missing = [f"{t}/{m}" for t in ref for m in ref[t] if m not in metrics.get(t, {})]
        if missing:
            raise ValueError(f"run {row['run_id']} ({row[S.TAG_METHOD]}) lacks test metric {missing[0]} "
                             "that its dense reference has")
        dt = delta_t(metrics, ref, _row_directions(row, metrics), convention)  # type: ignore[arg-type]
        for k, v in dt.items():
            out.setdefault(DT_PREFIX + k, [math.nan] * len(runs))[i] = v
    for k, v in out.items():
        runs[k] = v
    runs.attrs["conventions"] = conventions
    return runs


def _mean_metrics(items: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for task in items[0]:
        for m in items[0][task]:
            vals = [it[task][m] for it in items if m in it.get(task, {})]
            out.setdefault(task, {})[m] = math.fsum(vals) / len(vals)
    return out


def pick_trials(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per group of ``keys`` + seed, the run the tuner reported: the run the orchestrator tagged
    ``best=true`` (its penalised validation objective), else the best ``val/delta_t`` (test never selects),
    latest run on ties or when no validation score was logged."""
    val = metric_col(S.val_delta_t())
    best_tag = "tags.best"
    order = runs.assign(
        _best=(runs[best_tag] == "true").astype(int) if best_tag in runs else 0,
        _val=runs[val].fillna(-np.inf) if val in runs else -np.inf,
        _end=runs["end_time"].astype("float64").fillna(-np.inf),
    ).sort_values(["_best", "_val", "_end"], kind="stable")
    picked = order.groupby([*keys, S.TAG_SEED], dropna=False, sort=False).tail(1)
    return picked.drop(columns=["_best", "_val", "_end"])


# -- selection ------------------------------------------------------------------------------------------
def _choose(runs: pd.DataFrame, col: str, value: Any, what: str) -> Any:
    present = runs[col].dropna()
    if value is not None:
        if col == S.TAG_TARGET_SPARSITY:
            value = float(value)
            value = value / 100 if value > 1 else value
            ok = np.isclose(present.astype(float), value)
            if not ok.any():
                raise ValueError(f"no run with {what} {value:g} (have: {_fmt_set(present)})")
            return present[ok].iloc[0]
        if not (present == value).any():
            raise ValueError(f"no run with {what} {value!r} (have: {_fmt_set(present)})")
        return value
    if present.empty:
        return None
    counts = present.value_counts()
    top = counts[counts == counts.max()].index
    return sorted(top)[-1] if col == S.TAG_TARGET_SPARSITY else sorted(top)[0]


def _fmt_set(values: pd.Series) -> str:
    return ", ".join(str(v) for v in sorted(pd.unique(values))) or "none"


def _select(runs: pd.DataFrame, dataset: str | None, arch: str | None) -> tuple[pd.DataFrame, str, str]:
    trials = runs[runs[S.TAG_ROLE] == S.ROLE_TRIAL]
    dataset = _choose(trials if not trials.empty else runs, S.TAG_DATASET, dataset, "dataset")
    runs = runs[runs[S.TAG_DATASET] == dataset]
    trials = runs[runs[S.TAG_ROLE] == S.ROLE_TRIAL]
    arch = _choose(trials if not trials.empty else runs, S.TAG_ARCH, arch, "arch")
    return runs[runs[S.TAG_ARCH] == arch], dataset, arch


def _at_sparsity(runs: pd.DataFrame, sparsity: float | None) -> tuple[pd.DataFrame, float | None]:
    trials = runs[runs[S.TAG_ROLE] == S.ROLE_TRIAL]
    if trials.empty:
        return runs, None
    # "covered by most methods" rather than most runs, so one method's big search does not decide
    by_target = trials.groupby(S.TAG_TARGET_SPARSITY)[S.TAG_METHOD].nunique()
    if sparsity is None:  # covered by most methods; ties → closest to the paper's headline 90 %
        tied = by_target[by_target == by_target.max()].index
        target = min(tied, key=lambda t: (abs(float(t) - PAPER_SPARSITY), -float(t)))
    else:
        target = _choose(trials, S.TAG_TARGET_SPARSITY, sparsity, "target sparsity")
    keep = (runs[S.TAG_ROLE] == S.ROLE_REFERENCE) | np.isclose(runs[S.TAG_TARGET_SPARSITY].astype(float), target)
    return runs[keep], float(target)


# -- aggregation ---------------------------------------------------------------------------------------
def _aggregate(runs: pd.DataFrame, keys: list[str], cols: list[str]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                pd.Series]:
    g = runs.groupby(keys, dropna=False, sort=False)
    return g[cols].mean(), g[cols].std(ddof=1), g.size()


def _row_label(method: str, variant: Any, is_reference: bool) -> str:
    label = method_info(method)["display"]
    if isinstance(variant, str) and variant:
        label = f"{label} {variant}"
    return label  # the dense reference row is "Dense Model", as in the paper (it is never ranked)


def _cite(table: Table, label: Any, method: str) -> None:
    info = method_info(method)
    if info["bibtex_key"]:  # the dense model too: the paper cites DeepLab [5] in its "Dense Model" row
        table.citations[label] = info["bibtex_key"]
        if info["bibtex"]:
            table.bibtex[info["bibtex_key"]] = info["bibtex"]
        year = f" ({info['year']})" if info["year"] else ""
        table.references[info["bibtex_key"]] = f"{info['title']}{year}"


def _convention_text(convention: str) -> str:
    how = ("sum over the task's metrics (as the paper's tables)" if convention == "paper"
           else "mean over the task's metrics (Eq. 7)")
    return (f"$\\Delta_{{T_t}}$: relative change vs. the dense model in \\%, signed so higher is better, "
            f"{how}; $\\Delta_T$: mean over tasks")


def _seeds_text(n: pd.Series) -> str:
    if n.max() <= 1:
        return "One seed per row."
    return f"Mean $\\pm$ std over seeds (n = {_fmt_n(n)})."


def _fmt_n(n: pd.Series) -> str:
    vals = sorted(set(int(v) for v in n))
    return str(vals[0]) if len(vals) == 1 else f"{vals[0]}–{vals[-1]}"


def _tasks_of(runs: pd.DataFrame) -> list[str]:
    tasks = {c[len(DT_PREFIX):] for c in runs.columns if c.startswith(DT_PREFIX)} - {S.OVERALL}
    return sorted(tasks, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER), t))


def _method_rows(runs: pd.DataFrame) -> list[tuple[str, Any]]:
    pairs = runs[[S.TAG_METHOD, S.TAG_VARIANT]].drop_duplicates().itertuples(index=False)
    # variants of a method before the method itself, as the paper lists "AdapMTL w/o ..." above "AdapMTL"
    return sorted(((m, v) for m, v in pairs),
                  key=lambda p: (method_sort_key(p[0]), not p[1], p[1] if isinstance(p[1], str) else ""))


# -- comparison (Tables 1–2) ----------------------------------------------------------------------------
def comparison(df: pd.DataFrame, *, dataset: str | None = None, arch: str | None = None,
               sparsity: float | None = None, convention: str = "paper", average_seeds: bool = False,
               task: str | None = None) -> Table:
    """Tables 1–2: per task its metrics (↑/↓) and ΔT_t, the sparsity of backbone and heads, then ΔT.

    ``task`` keeps one task's metric group (a comparison split by task, for print: see ``split_by_task``);
    the sparsity columns and the overall ΔT stay."""
    runs, dataset, arch = _select(df, dataset, arch)
    runs, target = _at_sparsity(runs, sparsity)
    scored = pick_trials(score_runs(runs, convention, average_seeds), [S.TAG_METHOD, S.TAG_VARIANT])
    all_tasks = _tasks_of(scored)
    if task is not None and task not in all_tasks:
        raise ValueError(f"no task {task!r} in these runs (have: {', '.join(all_tasks)})")
    tasks = all_tasks
    sample = scored.iloc[0]
    columns: list[tuple[str, str]] = []
    sources: list[str] = []
    better: dict[Any, str | None] = {}
    decimals: dict[Any, int] = {}
    signed: set[Any] = set()
    for i, t_name in enumerate(tasks, 1):
        if task is not None and t_name != task:
            continue
        metrics = [(c, m) for c, t, m in _test_columns(scored) if t == t_name and scored[c].notna().any()]
        metrics.sort(key=lambda cm: (list(METRIC_LABELS).index(cm[1]) if cm[1] in METRIC_LABELS else 99, cm[1]))
        dirs = _row_directions(sample, {t_name: [m for _, m in metrics]})[t_name]
        group = task_label(t_name, i)
        for c, m in metrics:
            key = (group, metric_label(m, dirs[m]))
            columns.append(key)
            sources.append(c)
            better[key] = dirs[m]
            decimals[key] = metric_decimals(scored[c])
        key = (group, f"ΔT{i} {UP}")
        columns.append(key)
        sources.append(DT_PREFIX + t_name)
        better[key] = S.DIRECTION_HIGHER
    spars_group = "Sparsity %"
    comps = [(S.BACKBONE, "BB")] + [(S.head(t), TASK_LABELS.get(t, (t, t))[1]) for t in tasks]
    achieved = metric_col(S.final_sparsity(S.OVERALL))
    show_overall = target is not None and achieved in scored and (
        (scored.loc[scored[S.TAG_ROLE] == S.ROLE_TRIAL, achieved] - target).abs() > SPARSITY_TOLERANCE).any()
    if show_overall:
        comps.append((S.OVERALL, "Overall"))
    for comp, name in comps:
        col = metric_col(S.final_sparsity(comp))
        if col in scored:
            columns.append((spars_group, name))
            sources.append(col)
            better[(spars_group, name)] = None
    columns.append(("", f"ΔT {UP}"))
    sources.append(DT_PREFIX + S.OVERALL)
    better[("", f"ΔT {UP}")] = S.DIRECTION_HIGHER
    for key in columns:
        decimals.setdefault(key, 2)
    values = scored[sources].copy()
    for c in sources:  # sparsity in percent, the reference shows "–" as in the paper
        if c.startswith(METRIC_COL + S.FINAL_SPARSITY_PREFIX):
            values[c] = np.where(scored[S.TAG_ROLE] == S.ROLE_REFERENCE, np.nan, values[c] * 100)
    for key in (S.TAG_METHOD, S.TAG_VARIANT, S.TAG_SEED):
        values[key] = scored[key]
    table = _assemble("comparison", values, columns, sources, better, decimals, signed, convention, scored,
                      target)
    pct = "" if target is None else f" at {target * 100:g}\\% target overall sparsity"
    heads = ", ".join(f"{TASK_LABELS.get(t, (t, t))[1]} {task_label(t).lower()}" for t in tasks
                      if task is None or t == task)
    table.caption = _caption(table, f"Comparison with pruning methods on {_latex_name(dataset)} "
                             f"({_latex_name(arch)}){pct}.", df, scored,
                             f"Sparsity \\%: achieved, of the backbone (BB) and each head ({heads}). "
                             "Acc.: pixel accuracy; Med.: median angle.")
    table.label = f"tab:comparison-{dataset}-{arch}" + (f"-{task}" if task else "")
    return table


def split_by_task(df: pd.DataFrame, **opts: Any) -> list[Table]:
    """The comparison as one table per task (each with the sparsity columns and the overall ΔT): the
    paper's Table 1 layout at a readable size in a two-column page."""
    runs, dataset, arch = _select(df, opts.get("dataset"), opts.get("arch"))
    scored = score_runs(runs, opts.get("convention", "paper"), opts.get("average_seeds", False))
    return [comparison(df, **{**opts, "task": t}) for t in _tasks_of(scored)]


def metric_decimals(values: pd.Series) -> int:
    """Decimals that keep three significant digits of a metric column (at least 2): Taskonomy's errors
    (0.0222, 0.0246) stay distinguishable, percentages print as the paper's (57.91)."""
    finite = values.dropna().abs()
    finite = finite[finite > 0]
    if finite.empty:
        return 2
    magnitude = math.floor(math.log10(float(finite.median())))
    return int(min(6, max(2, 2 - magnitude)))


def _latex_name(s: str) -> str:
    """Display name of an architecture or dataset, LaTeX-escaped (captions are LaTeX)."""
    name = ARCH_LABELS.get(str(s)) or DATASET_LABELS.get(str(s)) or str(s)
    return name.replace("_", "\\_")


def arch_label(arch: str) -> str:
    return ARCH_LABELS.get(str(arch), str(arch))


def arch_sort_key(arch: str) -> tuple[int, str]:
    """The paper's order (ResNet34, then MobileNetV2), unknown architectures after, alphabetically."""
    order = list(ARCH_LABELS)
    return (order.index(arch), "") if arch in order else (len(order), str(arch))


def _assemble(kind: str, frame: pd.DataFrame, columns: list[Any], sources: list[str],
              better: dict[Any, str | None], decimals: dict[Any, int], signed: set[Any], convention: str,
              scored: pd.DataFrame, target: float | None) -> Table:
    """Rows in method order, labelled and cited; columns renamed from source columns to display keys.

    ``frame`` has one row per picked run: ``method``, ``variant``, ``seed`` and the ``sources`` columns.
    Keeps the per-seed values, marks rows whose achieved sparsity misses ``target`` as never ranked, and the
    95 % CI of the overall ΔT per row.
    """
    from results.stats import t_interval

    keys = [S.TAG_METHOD, S.TAG_VARIANT]
    g = frame.groupby(keys, dropna=False, sort=False)
    mean, std, n = g[sources].mean(), g[sources].std(ddof=1), g.size()
    order = _method_rows(scored)
    labels, rows, refs = [], [], set()
    table = Table(kind, pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=int), better, "", "", convention,
                  decimals, signed)
    table.conventions = scored.attrs.get("conventions")
    per_seed_parts = []
    overall = DT_PREFIX + S.OVERALL
    for i, (method, variant) in enumerate(order):
        key = (method, variant)
        is_ref = bool(((scored[S.TAG_METHOD] == method) & (scored[S.TAG_ROLE] == S.ROLE_REFERENCE)).any())
        label = _row_label(method, variant, is_ref)
        labels.append(label)
        rows.append(key)
        if is_ref:
            refs.add(label)
        _cite(table, label, method)
        mine = frame[(frame[S.TAG_METHOD] == method) & (frame[S.TAG_VARIANT] == variant)]
        part = mine.set_index(S.TAG_SEED)[sources]
        part.index = pd.MultiIndex.from_arrays([[i] * len(part), part.index], names=["row", "seed"])
        per_seed_parts.append(part)
        picked = scored[(scored[S.TAG_METHOD] == method) & (scored[S.TAG_VARIANT] == variant)]
        if not is_ref and target is not None:
            ach, _ = achieved_points(picked)
            if is_off_target(ach, target * 100):
                table.row_marks[i] = f"† {ach:.1f}%"
        if overall in mine and not is_ref:
            _m, lo, hi = t_interval(mine[overall].tolist())
            if np.isfinite(lo):
                table.ci[i] = (lo, hi)
    cols = pd.MultiIndex.from_tuples(columns) if isinstance(columns[0], tuple) else pd.Index(columns)
    idx = pd.Index(labels, name="Method")
    table.values = pd.DataFrame(mean.loc[rows, sources].to_numpy(), index=idx, columns=cols)
    table.std = pd.DataFrame(std.loc[rows, sources].to_numpy(), index=idx, columns=cols)
    table.n = pd.Series(n.loc[rows].to_numpy(), index=idx, name="n")
    table.reference_rows = refs
    per_seed = pd.concat(per_seed_parts)
    per_seed.columns = cols
    table.per_seed = per_seed
    table.ineligible = pd.DataFrame(False, index=range(len(rows)), columns=cols)
    for i in table.row_marks:
        table.ineligible.iloc[i, :] = True
    table.ineligible.index = idx
    table.budget_labels = dict(zip(rows, labels))  # type: ignore[attr-defined]
    return table


def _caption(table: Table, head: str, df: pd.DataFrame, scored: pd.DataFrame, extra: str = "") -> str:
    """The caption every table carries: what it shows, then how it was measured and how sure it is."""
    labels = getattr(table, "budget_labels", {})
    marks = table.marks
    any_tied = bool((marks == "tied").any().any())
    any_single = bool((marks == "single").any().any())
    return join([head, extra, conventions_text(table.conventions), _convention_text(table.convention) + ".",
                 seeds_text(table.n),
                 ranking_text(table.n, any_tied, bool(table.row_marks or table.cell_marks), any_single),
                 budget_text(df, scored, labels), compute_text(df, scored, labels), numerics_text(scored)])


# -- tasks (Table 3) ------------------------------------------------------------------------------------
def tasks(df: pd.DataFrame, *, dataset: str | None = None, arch: str | None = None,
          sparsity: float | None = None, convention: str = "paper", average_seeds: bool = False) -> Table:
    """Table 3: ΔT per task (T1..Tn, any number of tasks) and overall, one row per method."""
    runs, dataset, arch = _select(df, dataset, arch)
    runs, target = _at_sparsity(runs, sparsity)
    scored = pick_trials(score_runs(runs, convention, average_seeds), [S.TAG_METHOD, S.TAG_VARIANT])
    scored = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL]
    task_list = _tasks_of(scored)
    table = _delta_table("tasks", scored, task_list, convention, target)
    _add_achieved(table, scored)
    legend = ", ".join(f"T{i}: {task_label(t)}" for i, t in enumerate(task_list, 1)).rstrip(".")
    pct = "" if target is None else f" at {target * 100:g}\\% target sparsity"
    table.caption = _caption(table, f"Per-task results on {_latex_name(dataset)} ({_latex_name(arch)}){pct}. "
                             f"{legend}.", df, scored)
    table.label = f"tab:tasks-{dataset}-{arch}"
    return table


def _delta_table(kind: str, scored: pd.DataFrame, task_list: list[str], convention: str,
                 target: float | None) -> Table:
    columns = [f"ΔT{i} {UP}" for i in range(1, len(task_list) + 1)] + [f"ΔT {UP}"]
    sources = [DT_PREFIX + t for t in task_list] + [DT_PREFIX + S.OVERALL]
    better = {c: S.DIRECTION_HIGHER for c in columns}
    return _assemble(kind, scored, columns, sources, better, dict.fromkeys(columns, 2), set(columns),
                     convention, scored, target)


# -- ablation (Table 5) ---------------------------------------------------------------------------------
def ablation(df: pd.DataFrame, *, method: str = "adapmtl", dataset: str | None = None, arch: str | None = None,
             sparsity: float | None = None, convention: str = "paper", average_seeds: bool = False,
             keys: Sequence[str] | None = None) -> Table:
    """Table 5: the variants of one method, one row each, labelled by the spec (the ``variant`` tag), the
    full method (the entry without ``@variant``) last, with ΔT per task, overall, and the achieved sparsity.

    Rows are spec entries, never search trials: each entry's reported trial is its group's ``best=true``
    run. Without variant tags, ``keys`` (method parameters) may name the variants instead; their values are
    printed rounded.
    """
    runs, dataset, arch = _select(df, dataset, arch)
    runs, target = _at_sparsity(runs, sparsity)
    runs = runs[(runs[S.TAG_ROLE] == S.ROLE_REFERENCE) | (runs[S.TAG_METHOD] == method)]
    if not (runs[S.TAG_METHOD] == method).any():
        raise ValueError(f"no {method!r} runs for the ablation table on {dataset}/{arch}")
    scored = score_runs(runs, convention, average_seeds)
    conventions = scored.attrs.get("conventions")
    scored = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL].copy()
    scored.attrs["conventions"] = conventions
    scored[S.TAG_VARIANT] = variant_labels(scored, method, keys)
    scored = pick_trials(scored, [S.TAG_METHOD, S.TAG_VARIANT])
    scored.attrs["conventions"] = conventions
    task_list = _tasks_of(scored)
    full_variant = _full_variant(scored)
    table = _delta_table("ablation", scored, task_list, convention, target)
    _add_achieved(table, scored)
    # rows: the spec's labels (not "AdapMTL <label>"), the full method last, as in the paper
    keys_in_order = list(getattr(table, "budget_labels", {}))
    display = method_info(method)["display"]
    labels = [str(v) if isinstance(v, str) and v else display for _, v in keys_in_order]
    full_pos = [i for i, (_, v) in enumerate(keys_in_order) if (v or "") == full_variant]
    order = [i for i in range(len(labels)) if i not in full_pos] + full_pos
    _reorder(table, order, [labels[i] for i in order], "Variant")
    for i in full_pos:  # the full method's row cites the method
        _cite(table, labels[i], method)
    legend = ", ".join(f"T{i}: {task_label(t)}" for i, t in enumerate(task_list, 1)).rstrip(".")
    pct = "" if target is None else f" at {target * 100:g}\\% target sparsity"
    table.caption = _caption(table, f"Ablation of {display} on {_latex_name(dataset)} ({_latex_name(arch)}){pct}. "
                             f"{legend}. The full method is the last row.", df, scored)
    table.label = f"tab:ablation-{dataset}-{arch}"
    return table


def _add_achieved(table: Table, scored: pd.DataFrame) -> None:
    """An "achieved overall sparsity" column before the overall ΔT (tables compared at one target)."""
    achieved = metric_col(S.final_sparsity(S.OVERALL))
    if achieved not in scored:
        return
    spars = scored.groupby([S.TAG_METHOD, S.TAG_VARIANT], dropna=False, sort=False)[achieved]
    keys = list(getattr(table, "budget_labels", {}))
    at = len(table.values.columns) - 1
    table.values.insert(at, "Sparsity %", [float(spars.mean().get(k, np.nan)) * 100 for k in keys])
    table.std.insert(at, "Sparsity %", [float(spars.std(ddof=1).get(k, np.nan)) * 100 for k in keys])
    table.better["Sparsity %"] = None
    table.decimals["Sparsity %"] = 1
    if table.ineligible is not None:
        table.ineligible.insert(at, "Sparsity %", False)
    if table.per_seed is not None:
        table.per_seed.insert(at, "Sparsity %", np.nan)


def _full_variant(scored: pd.DataFrame) -> str:
    """The variant label of the full method: the runs of the spec entry without ``@`` (tag ``entry``), else
    the runs with no variant label."""
    if "tags.entry" in scored:
        plain = scored[scored["tags.entry"].notna() & ~scored["tags.entry"].astype(str).str.contains("@")]
        if not plain.empty:
            return str(plain[S.TAG_VARIANT].iloc[0] or "")
    return ""


def _reorder(table: Table, order: list[int], labels: list[Any], name: str) -> None:
    """Permute a table's rows (and everything keyed by row position) and relabel them."""
    idx = pd.Index(labels, name=name)
    pos = {old: new for new, old in enumerate(order)}
    table.values = table.values.iloc[order].set_axis(idx)
    table.std = table.std.iloc[order].set_axis(idx)
    table.n = table.n.iloc[order].set_axis(idx)
    if table.ineligible is not None:
        table.ineligible = table.ineligible.iloc[order].set_axis(idx)
    if table.per_seed is not None:
        ps = table.per_seed
        rows = [pos[r] for r in ps.index.get_level_values(0)]
        table.per_seed = ps.set_axis(pd.MultiIndex.from_arrays([rows, ps.index.get_level_values(1)],
                                                              names=ps.index.names)).sort_index(level=0)
    table.row_marks = {pos[k]: v for k, v in table.row_marks.items()}
    table.ci = {pos[k]: v for k, v in table.ci.items()}
    old_labels = list(getattr(table, "budget_labels", {}).items())
    table.budget_labels = {old_labels[o][0]: labels[i] for i, o in enumerate(order)}  # type: ignore[attr-defined]
    table.citations = {}
    table.reference_rows = set()


def variant_labels(runs: pd.DataFrame, method: str, keys: Sequence[str] | None = None) -> pd.Series:
    """A label per run: the ``variant`` tag; else, when ``keys`` name method parameters, ``key=value`` for
    each of them that differs from its default; "" otherwise (the full method). Searched parameters never
    make variants by themselves: the trials of one group are one row (its reported trial)."""
    tagged = runs[S.TAG_VARIANT].where(runs[S.TAG_VARIANT].notna(), "")
    if (tagged != "").any() or not keys:
        return tagged.astype(object)
    cols = [PARAM_COL + S.METHOD_PARAM_PREFIX + k for k in keys]
    cols = [c for c in cols if c in runs and runs[c].nunique(dropna=False) > 1]
    defaults = _param_defaults(method)
    labels = []
    for _, row in runs.iterrows():
        parts = []
        for c in cols:
            name = c[len(PARAM_COL + S.METHOD_PARAM_PREFIX):]
            ref = defaults.get(name, runs[c].mode(dropna=False).iloc[0])
            if str(row[c]) != str(ref):
                parts.append(f"{name}={_short(row[c])}")
        labels.append(", ".join(parts))
    return pd.Series(labels, index=runs.index, dtype="object")


def _short(value: Any) -> str:
    """A parameter value as a label: floats to 3 significant digits ("0.514", not 0.5142125743762794)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{f:.3g}" if not float(f).is_integer() or "." in str(value) else str(value)


def _param_defaults(method: str) -> dict[str, str]:
    return param_defaults(method)  # {} when the registry is unavailable: the most common value is used


# -- cost (Table 4) -------------------------------------------------------------------------------------
def cost(df: pd.DataFrame, *, dataset: str | None = None, arch: str | None = None,
         methods: Sequence[str] | None = None, convention: str = "paper", average_seeds: bool = False) -> Table:
    """Table 4: per architecture the dense model, then each method × target sparsity: achieved sparsity,
    non-zero params, sparse FLOPs and ΔT. All architectures unless ``arch`` is given."""
    trials = df[df[S.TAG_ROLE] == S.ROLE_TRIAL]
    dataset = _choose(trials if not trials.empty else df, S.TAG_DATASET, dataset, "dataset")
    runs = df[df[S.TAG_DATASET] == dataset]
    if arch is not None:
        runs = runs[runs[S.TAG_ARCH] == _choose(runs, S.TAG_ARCH, arch, "arch")]
    if methods:
        runs = runs[(runs[S.TAG_ROLE] == S.ROLE_REFERENCE) | runs[S.TAG_METHOD].isin(list(methods))]
    scored = pick_trials(score_runs(runs, convention, average_seeds),
                         [S.TAG_ARCH, S.TAG_METHOD, S.TAG_VARIANT, S.TAG_TARGET_SPARSITY])
    achieved = metric_col(S.final_sparsity(S.OVERALL))
    params, flops = metric_col(S.FINAL_PARAMS_NONZERO), metric_col(S.FINAL_FLOPS_SPARSE)
    for col in (achieved, params, flops):
        if col not in scored:
            scored[col] = np.nan
    scored = scored.assign(_ach=scored[achieved] * 100, _tgt=scored[S.TAG_TARGET_SPARSITY].fillna(0) * 100)
    p_unit, p_scale = _unit(scored[params])
    f_unit, f_scale = _unit(scored[flops])
    scored["_params"] = scored[params] / p_scale
    scored["_flops"] = scored[flops] / f_scale
    step_eq = metric_col(S.COMPUTE_STEP_EQUIVALENTS)
    dense_eq = (scored[scored[S.TAG_ROLE] == S.ROLE_REFERENCE].groupby(S.TAG_ARCH)[step_eq].mean()
                if step_eq in scored else pd.Series(dtype=float))
    scored["_compute"] = (scored[step_eq] / scored[S.TAG_ARCH].map(dense_eq) if step_eq in scored
                          else np.nan)
    show_compute = bool(scored["_compute"].notna().any())
    show_target = ((scored["_ach"] - scored["_tgt"]).abs() > SPARSITY_TOLERANCE * 100).any()
    cols = ((["Target (%)"] if show_target else []) + ["Sparsity (%)", f"Params ({p_unit})", f"FLOPs ({f_unit})"]
            + (["Train (×dense)"] if show_compute else []) + [f"ΔT {UP}"])
    sources = ((["_tgt"] if show_target else []) + ["_ach", "_params", "_flops"]
               + (["_compute"] if show_compute else []) + [DT_PREFIX + S.OVERALL])
    keys = [S.TAG_ARCH, S.TAG_METHOD, S.TAG_VARIANT, "_tgt"]
    mean, std, n = _aggregate(scored, keys, sources)
    rows = sorted(mean.index, key=lambda k: (arch_sort_key(k[0]), k[1] != S.DENSE_METHOD, float(k[3]),
                                             method_sort_key(k[1]), str(k[2])))
    labels = []
    decimals = dict(zip(cols, [2] * len(cols))) | {"Train (×dense)": 1}
    table = Table("cost", pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=int),
                  {c: None for c in cols} | {f"ΔT {UP}": S.DIRECTION_HIGHER}, "", "", convention,
                  decimals, best_within="Architecture")
    table.conventions = scored.attrs.get("conventions")
    per_seed = []
    for i, (a, m, v, tgt) in enumerate(rows):
        label = _row_label(m, v, m == S.DENSE_METHOD)
        labels.append((arch_label(a), label))
        if m == S.DENSE_METHOD:
            table.reference_rows.add((arch_label(a), label))
        _cite(table, label, m)
        sel = scored[(scored[S.TAG_ARCH] == a) & (scored[S.TAG_METHOD] == m) & (scored[S.TAG_VARIANT] == v)
                     & np.isclose(scored["_tgt"], tgt)]
        part = sel.set_index(S.TAG_SEED)[sources]
        part.index = pd.MultiIndex.from_arrays([[i] * len(part), part.index], names=["row", "seed"])
        per_seed.append(part)
        if m != S.DENSE_METHOD and is_off_target(float(sel["_ach"].mean()), float(tgt)):
            table.row_marks[i] = f"† {float(sel['_ach'].mean()):.1f}%"
    idx = pd.MultiIndex.from_tuples(labels, names=["Architecture", "Method"])
    table.values = pd.DataFrame(mean.loc[rows, sources].to_numpy(), index=idx, columns=cols)
    table.std = pd.DataFrame(std.loc[rows, sources].to_numpy(), index=idx, columns=cols)
    table.n = pd.Series(n.loc[rows].to_numpy(), index=idx, name="n")
    table.per_seed = pd.concat(per_seed).set_axis(cols, axis=1)
    table.ineligible = pd.DataFrame([[i in table.row_marks] * len(cols) for i in range(len(rows))],
                                    index=idx, columns=cols)
    table.budget_labels = {(m, v): label for (_a, m, v, _t), (_al, label) in zip(rows, labels)}  # type: ignore[attr-defined]
    extra = ("Train: training compute per run relative to the dense run of the same architecture (optimizer "
             "steps incl. dense phases and pruning rounds, plus scoring passes)." if show_compute else "")
    table.caption = _caption(table, f"Computational cost on {_latex_name(dataset)}: achieved overall sparsity, "
                             "non-zero parameters and FLOPs of the sparse model.", df, scored, extra)
    table.label = f"tab:cost-{dataset}"
    return table


def _unit(values: pd.Series) -> tuple[str, float]:
    peak = values.abs().max()
    if not np.isfinite(peak) or peak == 0:
        return "", 1.0
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if peak >= scale:
            return unit, scale
    return "", 1.0


# -- sweep (Fig. 4 data) --------------------------------------------------------------------------------
def _sweep_scored(df: pd.DataFrame, dataset: str | None, convention: str, average_seeds: bool
                  ) -> tuple[pd.DataFrame, str]:
    trials = df[df[S.TAG_ROLE] == S.ROLE_TRIAL]
    dataset = _choose(trials if not trials.empty else df, S.TAG_DATASET, dataset, "dataset")
    runs = df[df[S.TAG_DATASET] == dataset]
    keys = [S.TAG_ARCH, S.TAG_METHOD, S.TAG_VARIANT, S.TAG_TARGET_SPARSITY]
    scored = score_runs(runs, convention, average_seeds)
    conventions = scored.attrs.get("conventions")
    scored = pick_trials(scored, keys)
    achieved = metric_col(S.final_sparsity(S.OVERALL))
    scored = scored.assign(_ach=scored[achieved] * 100 if achieved in scored else np.nan)
    scored.attrs["conventions"] = conventions
    return scored, dataset


def sweep_data(df: pd.DataFrame, *, dataset: str | None = None, convention: str = "paper",
               average_seeds: bool = False) -> pd.DataFrame:
    """Long form of Fig. 4: ``arch, method, variant, target, dt_mean, dt_std, n, achieved`` (percent), the
    95 % CI of the mean ΔT (``ci_low``, ``ci_high``; NaN below 2 seeds) and ``off_target`` (achieved
    sparsity more than 0.5 points from the target). ``attrs["conventions"]`` carries the conventions tag."""
    from results.stats import t_interval

    scored, dataset = _sweep_scored(df, dataset, convention, average_seeds)
    trials = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL]
    keys = [S.TAG_ARCH, S.TAG_METHOD, S.TAG_VARIANT, S.TAG_TARGET_SPARSITY]
    rows = []
    for key, sel in trials.groupby(keys, dropna=False, sort=False):
        dts = sel[DT_PREFIX + S.OVERALL].tolist()
        mean, lo, hi = t_interval(dts)
        ach = float(sel["_ach"].mean())
        rows.append({"arch": key[0], "method": key[1], "variant": key[2], "target": float(key[3]) * 100,
                     "dt_mean": mean, "dt_std": float(np.std(dts, ddof=1)) if len(dts) > 1 else np.nan,
                     "n": len(dts), "achieved": ach, "ci_low": lo, "ci_high": hi,
                     "off_target": is_off_target(ach, float(key[3]) * 100)})
    out = pd.DataFrame(rows, columns=["arch", "method", "variant", "target", "dt_mean", "dt_std", "n",
                                      "achieved", "ci_low", "ci_high", "off_target"])
    out["dataset"] = dataset
    out = out.sort_values(["arch", "method", "target"], key=lambda s: s.map(
        lambda v: method_sort_key(v) if s.name == "method" else v)).reset_index(drop=True)
    out.attrs["conventions"] = scored.attrs.get("conventions")
    out.attrs["scored"] = scored
    return out


def sweep(df: pd.DataFrame, *, dataset: str | None = None, arch: str | None = None, convention: str = "paper",
          average_seeds: bool = False) -> Table:
    """ΔT per method (rows, grouped by architecture) and target sparsity (columns): the data of Fig. 4."""
    data = sweep_data(df, dataset=dataset, convention=convention, average_seeds=average_seeds)
    scored: pd.DataFrame = data.attrs["scored"]
    if arch is not None:
        chosen = _choose(data, "arch", arch, "arch")
        data = data[data["arch"] == chosen]
        scored = scored[scored[S.TAG_ARCH] == chosen]
    if data.empty:
        raise ValueError("no finished trials to tabulate")
    show_ach = ((data["achieved"] - data["target"]).abs() > SPARSITY_TOLERANCE * 100).any()
    targets = sorted(data["target"].unique())
    columns: list[tuple[str, str]] = []
    for t in targets:
        columns.append((f"{t:g}%", f"ΔT {UP}"))
        if show_ach:
            columns.append((f"{t:g}%", "Achieved %"))
    rows = sorted({(a, m, v if isinstance(v, str) else "") for a, m, v in
                   data[["arch", "method", "variant"]].itertuples(index=False)},
                  key=lambda r: (arch_sort_key(r[0]), method_sort_key(r[1]), not r[2], r[2]))
    labels = [(arch_label(a), _row_label(m, v, False)) for a, m, v in rows]
    idx = pd.MultiIndex.from_tuples(labels, names=["Architecture", "Method"])
    cols = pd.MultiIndex.from_tuples(columns)
    values = pd.DataFrame(np.nan, index=idx, columns=cols)
    std = values.copy()
    ineligible = pd.DataFrame(False, index=idx, columns=cols)
    n = pd.Series(0, index=idx, name="n")
    per_seed = []
    trials = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL]
    table = Table("sweep", values, std, n, {}, "", "", convention, dict.fromkeys(columns, 2),
                  best_within="Architecture")
    for i, (r, label) in enumerate(zip(rows, labels)):
        sel = data[(data["arch"] == r[0]) & (data["method"] == r[1]) & (data["variant"].fillna("") == r[2])]
        for _, rec in sel.iterrows():
            col = (f"{rec['target']:g}%", f"ΔT {UP}")
            values.loc[label, col] = rec["dt_mean"]
            std.loc[label, col] = rec["dt_std"]
            if rec["off_target"]:
                ineligible.loc[label, col] = True
                table.cell_marks[(i, cols.get_loc(col))] = "†"
            if show_ach:
                values.loc[label, (f"{rec['target']:g}%", "Achieved %")] = rec["achieved"]
            n[label] = max(n[label], int(rec["n"]))
        mine = trials[(trials[S.TAG_ARCH] == r[0]) & (trials[S.TAG_METHOD] == r[1])
                      & (trials[S.TAG_VARIANT].astype(object).fillna("") == r[2])]
        wide = mine.pivot_table(index=S.TAG_SEED, columns=S.TAG_TARGET_SPARSITY,
                                values=DT_PREFIX + S.OVERALL, aggfunc="last")
        part = pd.DataFrame(np.nan, index=wide.index, columns=cols)
        for t in wide.columns:
            part[(f"{float(t) * 100:g}%", f"ΔT {UP}")] = wide[t].to_numpy()
        part.index = pd.MultiIndex.from_arrays([[i] * len(part), part.index], names=["row", "seed"])
        per_seed.append(part)
    table.better = {c: (S.DIRECTION_HIGHER if c[1].startswith("ΔT") else None) for c in columns}
    table.per_seed = pd.concat(per_seed) if per_seed else None
    table.ineligible = ineligible
    table.conventions = data.attrs.get("conventions")
    for (_a, m, _v), label in zip(rows, labels):
        _cite(table, label, m)
    table.budget_labels = {(m, v): lab for (_a, m, v), (_al, lab) in zip(rows, labels)}  # type: ignore[attr-defined]
    table.caption = _caption(table, f"$\\Delta_T$ vs. target overall sparsity on "
                             f"{_latex_name(data['dataset'].iloc[0])}, best per column and architecture.",
                             df, scored, "$\\dagger$ cells missed their target by more than 0.5 points."
                             if table.cell_marks else "")
    table.label = f"tab:sweep-{data['dataset'].iloc[0]}"
    return table


def build(kind: str, df: pd.DataFrame, **opts: Any) -> Table:
    """Dispatch by kind with the CLI's options (None values dropped, unknown options rejected)."""
    funcs = {"comparison": comparison, "tasks": tasks, "ablation": ablation, "cost": cost, "sweep": sweep}
    if kind not in funcs:
        raise ValueError(f"unknown table kind {kind!r} (known: {', '.join(KINDS)})")
    import inspect

    accepted = inspect.signature(funcs[kind]).parameters
    kwargs = {k: v for k, v in opts.items() if v is not None and k in accepted}
    return funcs[kind](df, **kwargs)
