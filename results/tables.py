"""The paper's tables as DataFrames: comparison (Tables 1–2), tasks (3), cost (4), ablation (5), sweep (Fig. 4).

Every table is built the same way so that the numbers mean the same thing everywhere:
1. score each finished run: ΔT recomputed from its test metrics against the dense reference of the same
   (dataset, arch, seed) — or the seed-averaged reference when asked — never read back from a logged value;
2. per (method, variant, target sparsity, seed) keep the trial the tuner would pick: best ``val/delta_t``
   (the test split never selects; the latest run breaks ties);
3. aggregate over seeds: mean, sample std and n.
A :class:`Table` holds means, stds, n and what "best" means per column; ``results.render`` turns it into
LaTeX / Markdown / CSV.
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

    @property
    def best(self) -> pd.DataFrame:
        """Boolean frame: the best value of each column with a direction (ties all marked; baseline rows
        excluded, since the dense model is the reference, not a competitor)."""
        mask = pd.DataFrame(False, index=self.values.index, columns=self.values.columns)
        eligible = ~self.values.index.isin(list(self.reference_rows))
        groups = (self.values.index.get_level_values(self.best_within) if self.best_within
                  else pd.Index(["all"] * len(self.values)))
        for col, direction in self.better.items():
            if direction is None or col not in self.values.columns:
                continue
            rounded = self.values[col].round(self.decimals.get(col, 2))
            for g in pd.unique(groups):
                sel = (groups == g) & eligible & rounded.notna().to_numpy()
                if not sel.any():
                    continue
                target = rounded[sel].max() if direction == S.DIRECTION_HIGHER else rounded[sel].min()
                mask.loc[sel & (rounded == target).to_numpy(), col] = True
        return mask


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
    out = []
    for col in df.columns:
        if col.startswith(METRIC_COL):
            parsed = S.parse_test_metric(col[len(METRIC_COL):])
            if parsed:
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
    return f"{label} (baseline)" if is_reference else label


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
               sparsity: float | None = None, convention: str = "paper", average_seeds: bool = False) -> Table:
    """Tables 1–2: per task its metrics (↑/↓) and ΔT_t, the sparsity of backbone and heads, then ΔT."""
    runs, dataset, arch = _select(df, dataset, arch)
    runs, target = _at_sparsity(runs, sparsity)
    scored = pick_trials(score_runs(runs, convention, average_seeds), [S.TAG_METHOD, S.TAG_VARIANT])
    tasks = _tasks_of(scored)
    sample = scored.iloc[0]
    columns: list[tuple[str, str]] = []
    sources: list[str] = []
    better: dict[Any, str | None] = {}
    decimals: dict[Any, int] = {}
    signed: set[Any] = set()
    for i, task in enumerate(tasks, 1):
        metrics = [(c, m) for c, t, m in _test_columns(scored) if t == task and scored[c].notna().any()]
        metrics.sort(key=lambda cm: (list(METRIC_LABELS).index(cm[1]) if cm[1] in METRIC_LABELS else 99, cm[1]))
        dirs = _row_directions(sample, {task: [m for _, m in metrics]})[task]
        group = task_label(task, i)
        for c, m in metrics:
            key = (group, metric_label(m, dirs[m]))
            columns.append(key)
            sources.append(c)
            better[key] = dirs[m]
        key = (group, f"ΔT{i} {UP}")
        columns.append(key)
        sources.append(DT_PREFIX + task)
        better[key] = S.DIRECTION_HIGHER
    spars_group = "Sparsity %"
    comps = [(S.BACKBONE, "Backbone")] + [(S.head(t), f"{TASK_LABELS.get(t, (t, t))[1]} head") for t in tasks]
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
        decimals[key] = 2
    values = scored[sources].copy()
    for c in sources:  # sparsity in percent, the reference shows "–" as in the paper
        if c.startswith(METRIC_COL + S.FINAL_SPARSITY_PREFIX):
            values[c] = np.where(scored[S.TAG_ROLE] == S.ROLE_REFERENCE, np.nan, values[c] * 100)
    values[S.TAG_METHOD] = scored[S.TAG_METHOD]
    values[S.TAG_VARIANT] = scored[S.TAG_VARIANT]
    mean, std, n = _aggregate(values, [S.TAG_METHOD, S.TAG_VARIANT], sources)
    table = _assemble("comparison", mean, std, n, columns, sources, better, decimals, signed, convention, scored)
    pct = "" if target is None else f" at {target * 100:g}\\% target overall sparsity"
    table.caption = (f"Comparison with pruning methods on {_latex_name(dataset)} ({_latex_name(arch)}){pct}. "
                     f"{_convention_text(convention)}. Sparsity: achieved, per component. "
                     f"{_seeds_text(table.n)} Best per column in bold.")
    table.label = f"tab:comparison-{dataset}-{arch}"
    return table


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


def _assemble(kind: str, mean: pd.DataFrame, std: pd.DataFrame, n: pd.Series, columns: list[Any],
              sources: list[str], better: dict[Any, str | None], decimals: dict[Any, int], signed: set[Any],
              convention: str, scored: pd.DataFrame) -> Table:
    """Rows in method order, labelled and cited; columns renamed from source columns to display keys."""
    order = _method_rows(scored)
    labels, rows, refs = [], [], set()
    table = Table(kind, pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=int), better, "", "", convention,
                  decimals, signed)
    for method, variant in order:
        key = (method, variant)
        is_ref = bool(((scored[S.TAG_METHOD] == method) & (scored[S.TAG_ROLE] == S.ROLE_REFERENCE)).any())
        label = _row_label(method, variant, is_ref)
        labels.append(label)
        rows.append(key)
        if is_ref:
            refs.add(label)
        _cite(table, label, method)
    cols = pd.MultiIndex.from_tuples(columns) if isinstance(columns[0], tuple) else pd.Index(columns)
    idx = pd.Index(labels, name="Method")
    table.values = pd.DataFrame(mean.loc[rows, sources].to_numpy(), index=idx, columns=cols)
    table.std = pd.DataFrame(std.loc[rows, sources].to_numpy(), index=idx, columns=cols)
    table.n = pd.Series(n.loc[rows].to_numpy(), index=idx, name="n")
    table.reference_rows = refs
    return table


# -- tasks (Table 3) ------------------------------------------------------------------------------------
def tasks(df: pd.DataFrame, *, dataset: str | None = None, arch: str | None = None,
          sparsity: float | None = None, convention: str = "paper", average_seeds: bool = False) -> Table:
    """Table 3: ΔT per task (T1..Tn, any number of tasks) and overall, one row per method."""
    runs, dataset, arch = _select(df, dataset, arch)
    runs, target = _at_sparsity(runs, sparsity)
    scored = pick_trials(score_runs(runs, convention, average_seeds), [S.TAG_METHOD, S.TAG_VARIANT])
    scored = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL]
    task_list = _tasks_of(scored)
    table = _delta_table("tasks", scored, task_list, [S.TAG_METHOD, S.TAG_VARIANT], convention)
    legend = ", ".join(f"T{i}: {task_label(t)}" for i, t in enumerate(task_list, 1))
    pct = "" if target is None else f" at {target * 100:g}\\% target sparsity"
    table.caption = (f"Per-task results on {_latex_name(dataset)} ({_latex_name(arch)}){pct}. {legend}. "
                     f"{_convention_text(convention)}. {_seeds_text(table.n)} Best per column in bold.")
    table.label = f"tab:tasks-{dataset}-{arch}"
    return table


def _delta_table(kind: str, scored: pd.DataFrame, task_list: list[str], keys: list[str], convention: str,
                 ) -> Table:
    columns = [f"ΔT{i} {UP}" for i in range(1, len(task_list) + 1)] + [f"ΔT {UP}"]
    sources = [DT_PREFIX + t for t in task_list] + [DT_PREFIX + S.OVERALL]
    better = {c: S.DIRECTION_HIGHER for c in columns}
    mean, std, n = _aggregate(scored, keys, sources)
    return _assemble(kind, mean, std, n, columns, sources, better, dict.fromkeys(columns, 2), set(columns),
                     convention, scored)


# -- ablation (Table 5) ---------------------------------------------------------------------------------
def ablation(df: pd.DataFrame, *, method: str = "adapmtl", dataset: str | None = None, arch: str | None = None,
             sparsity: float | None = None, convention: str = "paper", average_seeds: bool = False,
             keys: Sequence[str] | None = None) -> Table:
    """Table 5: variants of one method. A ``variant`` tag names a variant; without it, variants are the
    method parameters (``params.method.*``, or ``keys``) whose values differ from the method's defaults
    (registry) or, failing that, from the most common value."""
    runs, dataset, arch = _select(df, dataset, arch)
    runs, target = _at_sparsity(runs, sparsity)
    runs = runs[(runs[S.TAG_ROLE] == S.ROLE_REFERENCE) | (runs[S.TAG_METHOD] == method)]
    if not (runs[S.TAG_METHOD] == method).any():
        raise ValueError(f"no {method!r} runs for the ablation table on {dataset}/{arch}")
    scored = score_runs(runs, convention, average_seeds)
    scored = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL].copy()
    scored[S.TAG_VARIANT] = variant_labels(scored, method, keys)
    scored = pick_trials(scored, [S.TAG_METHOD, S.TAG_VARIANT])
    task_list = _tasks_of(scored)
    table = _delta_table("ablation", scored, task_list, [S.TAG_METHOD, S.TAG_VARIANT], convention)
    # full method last, as in the paper
    full = method_info(method)["display"]
    order = [r for r in table.values.index if r != full] + ([full] if full in table.values.index else [])
    table.values, table.std, table.n = table.values.loc[order], table.std.loc[order], table.n.loc[order]
    table.values.index = table.std.index = table.n.index = pd.Index(order, name="Variant")
    legend = ", ".join(f"T{i}: {task_label(t)}" for i, t in enumerate(task_list, 1))
    pct = "" if target is None else f" at {target * 100:g}\\% target sparsity"
    table.caption = (f"Ablation of {full} on {_latex_name(dataset)} ({_latex_name(arch)}){pct}. {legend}. "
                     f"{_convention_text(convention)}. {_seeds_text(table.n)} Best per column in bold.")
    table.label = f"tab:ablation-{dataset}-{arch}"
    return table


def variant_labels(runs: pd.DataFrame, method: str, keys: Sequence[str] | None = None) -> pd.Series:
    """A label per run: the ``variant`` tag, else ``key=value`` for each varying method param that differs
    from its default; "" for the full method."""
    tagged = runs[S.TAG_VARIANT].where(runs[S.TAG_VARIANT].notna(), "")
    if (tagged != "").any():
        return tagged.astype(object)
    cols = [PARAM_COL + S.METHOD_PARAM_PREFIX + k for k in keys] if keys else [
        c for c in runs.columns if c.startswith(PARAM_COL + S.METHOD_PARAM_PREFIX)]
    cols = [c for c in cols if c in runs and runs[c].nunique(dropna=False) > 1]
    defaults = _param_defaults(method)
    labels = []
    for _, row in runs.iterrows():
        parts = []
        for c in cols:
            name = c[len(PARAM_COL + S.METHOD_PARAM_PREFIX):]
            ref = defaults.get(name, runs[c].mode(dropna=False).iloc[0])
            if str(row[c]) != str(ref):
                parts.append(f"{name}={row[c]}")
        labels.append(", ".join(parts))
    return pd.Series(labels, index=runs.index, dtype="object")


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
    show_target = ((scored["_ach"] - scored["_tgt"]).abs() > SPARSITY_TOLERANCE * 100).any()
    cols = (["Target (%)"] if show_target else []) + ["Sparsity (%)", f"Params ({p_unit})", f"FLOPs ({f_unit})",
                                                     f"ΔT {UP}"]
    sources = (["_tgt"] if show_target else []) + ["_ach", "_params", "_flops", DT_PREFIX + S.OVERALL]
    keys = [S.TAG_ARCH, S.TAG_METHOD, S.TAG_VARIANT, "_tgt"]
    mean, std, n = _aggregate(scored, keys, sources)
    rows = sorted(mean.index, key=lambda k: (arch_sort_key(k[0]), k[1] != S.DENSE_METHOD, float(k[3]),
                                             method_sort_key(k[1]), str(k[2])))
    labels = []
    table = Table("cost", pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=int),
                  {c: None for c in cols} | {f"ΔT {UP}": S.DIRECTION_HIGHER}, "", "", convention,
                  dict(zip(cols, [2] * len(cols))), best_within="Architecture")
    for a, m, v, _ in rows:
        label = _row_label(m, v, m == S.DENSE_METHOD)
        labels.append((arch_label(a), label))
        if m == S.DENSE_METHOD:
            table.reference_rows.add((arch_label(a), label))
        _cite(table, label, m)
    idx = pd.MultiIndex.from_tuples(labels, names=["Architecture", "Method"])
    table.values = pd.DataFrame(mean.loc[rows, sources].to_numpy(), index=idx, columns=cols)
    table.std = pd.DataFrame(std.loc[rows, sources].to_numpy(), index=idx, columns=cols)
    table.n = pd.Series(n.loc[rows].to_numpy(), index=idx, name="n")
    table.caption = (f"Computational cost on {_latex_name(dataset)}: achieved overall sparsity, non-zero "
                     f"parameters and FLOPs of the sparse model. {_convention_text(convention)}. "
                     f"{_seeds_text(table.n)}")
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
def sweep_data(df: pd.DataFrame, *, dataset: str | None = None, convention: str = "paper",
               average_seeds: bool = False) -> pd.DataFrame:
    """Long form of Fig. 4: ``arch, method, variant, target, dt_mean, dt_std, n, achieved`` (percent)."""
    trials = df[df[S.TAG_ROLE] == S.ROLE_TRIAL]
    dataset = _choose(trials if not trials.empty else df, S.TAG_DATASET, dataset, "dataset")
    runs = df[df[S.TAG_DATASET] == dataset]
    keys = [S.TAG_ARCH, S.TAG_METHOD, S.TAG_VARIANT, S.TAG_TARGET_SPARSITY]
    scored = pick_trials(score_runs(runs, convention, average_seeds), keys)
    scored = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL]
    achieved = metric_col(S.final_sparsity(S.OVERALL))
    scored = scored.assign(_ach=scored[achieved] * 100 if achieved in scored else np.nan)
    g = scored.groupby(keys, dropna=False)
    out = pd.DataFrame({
        "dt_mean": g[DT_PREFIX + S.OVERALL].mean(), "dt_std": g[DT_PREFIX + S.OVERALL].std(ddof=1),
        "n": g.size(), "achieved": g["_ach"].mean(),
    }).reset_index().rename(columns={S.TAG_TARGET_SPARSITY: "target"})
    out["target"] = out["target"] * 100
    out["dataset"] = dataset
    out = out.sort_values(["arch", "method", "target"], key=lambda s: s.map(
        lambda v: method_sort_key(v) if s.name == "method" else v)).reset_index(drop=True)
    return out


def sweep(df: pd.DataFrame, *, dataset: str | None = None, arch: str | None = None, convention: str = "paper",
          average_seeds: bool = False) -> Table:
    """ΔT per method (rows, grouped by architecture) and target sparsity (columns): the data of Fig. 4."""
    data = sweep_data(df, dataset=dataset, convention=convention, average_seeds=average_seeds)
    if arch is not None:
        data = data[data["arch"] == _choose(data, "arch", arch, "arch")]
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
    n = pd.Series(0, index=idx, name="n")
    for r, label in zip(rows, labels):
        sel = data[(data["arch"] == r[0]) & (data["method"] == r[1]) &
                   (data["variant"].fillna("") == r[2])]
        for _, rec in sel.iterrows():
            values.loc[label, (f"{rec['target']:g}%", f"ΔT {UP}")] = rec["dt_mean"]
            std.loc[label, (f"{rec['target']:g}%", f"ΔT {UP}")] = rec["dt_std"]
            if show_ach:
                values.loc[label, (f"{rec['target']:g}%", "Achieved %")] = rec["achieved"]
            n[label] = max(n[label], int(rec["n"]))
    better = {c: (S.DIRECTION_HIGHER if c[1].startswith("ΔT") else None) for c in columns}
    table = Table("sweep", values, std, n, better, "", "", convention, dict.fromkeys(columns, 2),
                  best_within="Architecture")
    for (_a, m, _v), label in zip(rows, labels):
        _cite(table, label, m)
    table.caption = (f"$\\Delta_T$ vs. target overall sparsity on {_latex_name(data['dataset'].iloc[0])}. "
                     f"{_convention_text(convention)}. {_seeds_text(n)} Best per column and architecture in bold.")
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
