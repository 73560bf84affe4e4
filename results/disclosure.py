"""What every table must say about how its numbers were obtained: conventions, seeds, budgets, compute.

A reviewer defending a comparison needs, next to each number: the metric convention it was measured under,
how many seeds it averages, how much tuning each method got, and how much training it cost. Each of those
is read from the runs themselves (tags and ``compute/*`` metrics written by the orchestrator and the engine),
never from the spec, so a table built from a store on another machine says the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from results import schema as S
from results.collect import PARAM_COL, metric_col

__all__ = ["CI_NOTE", "OFF_TARGET_POINTS", "budget_text", "check_conventions", "compute_text", "conventions_text",
           "numerics_text", "ranking_text", "seeds_text"]

#: a row whose achieved overall sparsity misses its target by more than this many points is never ranked
OFF_TARGET_POINTS = 0.5
CONVENTIONS_COL = f"tags.{S.TAG_CONVENTIONS}"
BUDGET_TRIALS_COL = f"tags.{S.TAG_BUDGET_TRIALS}"
BUDGET_SEARCHED_COL = f"tags.{S.TAG_BUDGET_SEARCHED}"
STEP_EQ_COL = metric_col(S.COMPUTE_STEP_EQUIVALENTS)
NUMERICS_COL = f"tags.{S.TAG_FLUSH_DENORMALS}"


def check_conventions(runs: pd.DataFrame) -> str | None:
    """The one conventions tag of ``runs``; a ValueError when they mix (None when no run records one)."""
    if CONVENTIONS_COL not in runs:
        return None
    tags = runs[CONVENTIONS_COL].where(runs[CONVENTIONS_COL].notna(), "unrecorded")
    counts = tags.value_counts()
    if len(counts) > 1:
        parts = "; ".join(f"{n} run(s) with {t}" for t, n in counts.items())
        raise ValueError(f"these runs were evaluated under different metric conventions ({parts}); a table "
                         "never mixes them: select one (--filter \"tags.conventions = '...'\") or re-run")
    only = str(counts.index[0])
    return None if only == "unrecorded" else only


def conventions_text(tag: str | None) -> str:
    if tag is None:
        return "Metric conventions not recorded with these runs."
    from trainers.conventions import describe, from_tag

    return describe(from_tag(tag)) + "."


#: appended to a caption by the renderers that print the CI column
CI_NOTE = ("[a, b]: 95\\% CI (Student t over seeds) of $\\Delta_T$, i.e. of the paired per-seed difference to "
           "the dense model.")


def seeds_text(n: pd.Series) -> str:
    if len(n) == 0 or int(n.max()) <= 1:
        return "Single seed (n = 1) per row: no spread is shown and no difference is tested."
    ns = sorted({int(v) for v in n})
    nt = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"Mean $\\pm$ std over n = {nt} seeds."


def ranking_text(n: pd.Series, any_tied: bool, any_off: bool, any_single: bool = False) -> str:
    if len(n) == 0 or int(n.max()) <= 1:
        rule = "Bold: best printed value (single seed: not a significance test)."
    else:
        rule = ("Bold: best, with a paired 95\\% CI of its difference to every other row excluding 0"
                + ("; underlined: tied for best (the paired 95\\% CI of the difference to the leader includes 0)"
                   if any_tied else "") + "."
                + (" Where a group has a single seed, bold marks its best printed value, untested."
                   if any_single else ""))
    if any_off:
        rule += (f" $\\dagger$: achieved overall sparsity misses the target by more than {OFF_TARGET_POINTS:g} "
                 "points (achieved value shown); never ranked.")
    return rule


def _group_budget(df: pd.DataFrame, rows: pd.DataFrame) -> dict[tuple[Any, Any], tuple[int, list[str]]]:
    """Per (method, variant): (trials per group, searched parameters), from tags or the runs themselves."""
    out: dict[tuple[Any, Any], tuple[int, list[str]]] = {}
    trials = df[df[S.TAG_ROLE] == S.ROLE_TRIAL]
    for (method, variant), sel in rows.groupby([S.TAG_METHOD, S.TAG_VARIANT], dropna=False, sort=False):
        if BUDGET_TRIALS_COL in sel and sel[BUDGET_TRIALS_COL].notna().any():
            n = int(float(sel[BUDGET_TRIALS_COL].dropna().iloc[0]))
            raw = sel[BUDGET_SEARCHED_COL].dropna().iloc[0] if BUDGET_SEARCHED_COL in sel else ""
            searched = [p for p in str(raw).split(",") if p and p != "none"]
        else:  # older runs: count the group's trials, and the method params that vary within a group
            keys = [S.TAG_DATASET, S.TAG_ARCH, S.TAG_TARGET_SPARSITY, S.TAG_SEED]
            var = trials[S.TAG_VARIANT].astype(object).fillna("") if S.TAG_VARIANT in trials else ""
            mine = trials[(trials[S.TAG_METHOD] == method) & (var == (variant or ""))]
            sizes = mine.groupby(keys, dropna=False).size()
            n = int(sizes.max()) if len(sizes) else 1
            pcols = [c for c in mine.columns if c.startswith(PARAM_COL + S.METHOD_PARAM_PREFIX)]
            searched = sorted({c[len(PARAM_COL + S.METHOD_PARAM_PREFIX):] for c in pcols
                               if mine.groupby(keys, dropna=False)[c].nunique().max() > 1}) if n > 1 else []
        out[(method, variant)] = (n, searched)
    return out


_PARAM_NAMES = {"theta_init": "θ_init", "lam": "λ", "window": "window"}


def _tex(label: str) -> str:
    """A row label or parameter name as caption LaTeX (captions are LaTeX; renderers de-LaTeX them)."""
    from results.latex_text import latex_text

    return latex_text(label)


def budget_text(df: pd.DataFrame, scored: pd.DataFrame, labels: Mapping[tuple[Any, Any], str]) -> str:
    """"Tuning budget per group: AdapMTL 16 trials over θ_init, λ, window; SNIP, LTH 1 trial (no search)."""
    trials = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL]
    if trials.empty:
        return ""
    budgets = _group_budget(df, trials)
    phrases: dict[str, list[str]] = {}
    for key, (n, searched) in budgets.items():
        label = _tex(labels.get(key, str(key[0])))
        if n > 1 and searched:
            what = f"{n} trials over {', '.join(_tex(_PARAM_NAMES.get(p, p)) for p in searched)}"
        else:
            what = f"{n} trials" if n > 1 else "1 trial (no search)"
        phrases.setdefault(what, []).append(label)
    body = "; ".join(f"{', '.join(names)}: {what}" for what, names in phrases.items())
    equal = len({b[0] for b in budgets.values()}) == 1
    return f"Tuning budget per group ({'equal' if equal else 'unequal'}): {body}."


def compute_text(df: pd.DataFrame, scored: pd.DataFrame, labels: Mapping[tuple[Any, Any], str]) -> str:
    """Training compute per run relative to the dense run (``compute/step_equivalents``; the dense runs of
    the same datasets and architectures in ``df``)."""
    if STEP_EQ_COL not in scored or scored[STEP_EQ_COL].isna().all() or STEP_EQ_COL not in df:
        return ""
    refs = df[(df[S.TAG_ROLE] == S.ROLE_REFERENCE) & df[S.TAG_ARCH].isin(scored[S.TAG_ARCH].unique())
              & df[S.TAG_DATASET].isin(scored[S.TAG_DATASET].unique())]
    dense = refs[STEP_EQ_COL].dropna()
    if dense.empty or float(dense.mean()) == 0:
        return ""
    base = float(dense.mean())
    parts = []
    trials = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL]
    for key, sel in trials.groupby([S.TAG_METHOD, S.TAG_VARIANT], dropna=False, sort=False):
        vals = sel[STEP_EQ_COL].dropna()
        if len(vals):
            parts.append(f"{_tex(labels.get(key, str(key[0])))} {float(vals.mean()) / base:.1f}$\\times$")
    return ("Training compute per run, relative to the dense run (optimizer steps incl. dense phases and "
            f"rounds, plus scoring passes): {', '.join(parts)}.") if parts else ""


def numerics_text(scored: pd.DataFrame) -> str:
    """A sentence when the table's runs trained under different CPU arithmetic (``trainers.denormals``):
    flushed and IEEE denormals give the same maths but not the same low bits, so a reader must know that
    rows were not all produced alike. Nothing when they agree (docs/FIDELITY.md names the default)."""
    if NUMERICS_COL not in scored:
        return ""
    names = {"true": "flushed denormal floats to zero", "false": "kept IEEE denormals"}
    kinds = scored[NUMERICS_COL].map(lambda v: names.get(str(v).lower(), "unrecorded (IEEE, older runs)")
                                     if isinstance(v, str) else "unrecorded (IEEE, older runs)")
    counts = kinds.value_counts()
    if len(counts) < 2:
        return ""
    parts = ", ".join(f"{n} {what}" for what, n in counts.items())
    return (f"CPU arithmetic differs between these runs ({parts}; tag {_tex(S.TAG_FLUSH_DENORMALS)}): the same "
            "maths, not the same low bits.")


def achieved_points(rows: pd.DataFrame) -> tuple[float, float]:
    """(mean achieved overall sparsity, target) in percent for a set of runs of one row."""
    col = metric_col(S.final_sparsity(S.OVERALL))
    ach = float(rows[col].mean() * 100) if col in rows and rows[col].notna().any() else math.nan
    tgt = float(rows[S.TAG_TARGET_SPARSITY].astype(float).mean() * 100) if rows[S.TAG_TARGET_SPARSITY].notna().any() \
        else math.nan
    return ach, tgt


def is_off_target(achieved: float, target: float) -> bool:
    return bool(np.isfinite(achieved) and np.isfinite(target) and abs(achieved - target) > OFF_TARGET_POINTS)


def join(parts: Iterable[str]) -> str:
    return " ".join(p for p in parts if p)
