"""ΔT, the paper's normalized score (DESIGN.md §3.5), and the dense reference it is measured against.

Two conventions exist because the paper disagrees with itself: Eq. 7 writes ΔT_t as the *mean* of the
per-metric relative changes, but every printed table equals their *sum* (METHODS_SPEC §7: Table 1 SNIP
−5.68 − 4.47 = −10.15). ``paper`` (sum) is the default so our tables are comparable with the paper's;
``mean`` is Eq. 7 as written (Maninis et al.). The overall ΔT is the mean over tasks in both.

The training engine imports :func:`delta_t` for its validation objective; keep its signature.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from results import schema as S

Convention = Literal["paper", "mean"]
CONVENTIONS: tuple[str, ...] = ("paper", "mean")

#: Fallback directions by metric name (DESIGN §3.4 keys, NYUv2 and Taskonomy, plus the official code's
#: aliases). Runs normally carry their own in the ``directions`` tag; this table lets results work on runs
#: that do not (older runs, other machines).
BUILTIN_DIRECTIONS: dict[str, str] = {
    # higher is better
    "miou": S.DIRECTION_HIGHER, "pixel_acc": S.DIRECTION_HIGHER,
    "within_11.25": S.DIRECTION_HIGHER, "within_22.5": S.DIRECTION_HIGHER, "within_30": S.DIRECTION_HIGHER,
    "within_45": S.DIRECTION_HIGHER,
    "delta_1": S.DIRECTION_HIGHER, "delta_2": S.DIRECTION_HIGHER, "delta_3": S.DIRECTION_HIGHER,
    "cosine_similarity": S.DIRECTION_HIGHER,
    # lower is better
    "angle_mean": S.DIRECTION_LOWER, "angle_median": S.DIRECTION_LOWER,
    "abs_err": S.DIRECTION_LOWER, "rel_err": S.DIRECTION_LOWER, "rmse": S.DIRECTION_LOWER,
    "err": S.DIRECTION_LOWER, "key_err": S.DIRECTION_LOWER, "edge_err": S.DIRECTION_LOWER,
}


class MissingReferenceError(ValueError):
    """No dense reference run matches a trial; ΔT cannot be computed (never guessed)."""


def _term(value: float, ref: float, direction: str) -> float:
    sign = -1.0 if direction == S.DIRECTION_LOWER else 1.0
    return sign * (value - ref) / ref * 100.0


def delta_t(
    metrics: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    directions: Mapping[str, Mapping[str, str]],
    convention: Convention = "paper",
) -> dict[str, float]:
    """ΔT per task and overall: ``{task: ΔT_t, ..., "overall": ΔT}`` (percent).

    Per metric j: ``(−1)^{l_j}·(P_j − D_j)/D_j·100`` (l_j = 1 when lower is better). ``paper``: ΔT_t = sum of
    the task's terms; ``mean``: their mean. Overall = mean of ΔT_t over the tasks in ``metrics``.
    A metric absent from ``reference`` or ``directions``, or a zero reference value, is a ValueError naming
    it: a silently skipped metric would change the score's meaning.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown ΔT convention {convention!r} (known: {', '.join(CONVENTIONS)})")
    if not metrics:
        raise ValueError("ΔT needs at least one task's metrics")
    out: dict[str, float] = {}
    for task, values in metrics.items():
        if not values:
            raise ValueError(f"ΔT: task {task!r} has no metrics")
        terms = []
        for metric, value in values.items():
            ref = reference.get(task, {}).get(metric)
            if ref is None:
                raise ValueError(f"ΔT: reference has no value for {task}/{metric}")
            if ref == 0:
                raise ValueError(f"ΔT: reference value of {task}/{metric} is zero (relative change undefined)")
            direction = directions.get(task, {}).get(metric)
            if direction not in (S.DIRECTION_HIGHER, S.DIRECTION_LOWER):
                raise ValueError(f"ΔT: no direction (higher|lower) for {task}/{metric}, got {direction!r}")
            terms.append(_term(float(value), float(ref), direction))
        out[task] = math.fsum(terms) if convention == "paper" else math.fsum(terms) / len(terms)
    out[S.OVERALL] = math.fsum(out.values()) / len(out)
    return out


def builtin_directions(
    metrics: Mapping[str, Iterable[str]], overrides: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, dict[str, str]]:
    """Directions for ``{task: metrics}``: ``overrides`` (a run's tag) first, then the built-in table."""
    out: dict[str, dict[str, str]] = {}
    for task, names in metrics.items():
        for m in names:
            d = (overrides or {}).get(task, {}).get(m) or BUILTIN_DIRECTIONS.get(m)
            if d is None:
                raise ValueError(
                    f"no direction for metric {task}/{m}: log a {S.TAG_DIRECTIONS!r} tag with the run or "
                    "add it to results.scores.BUILTIN_DIRECTIONS"
                )
            out.setdefault(task, {})[m] = d
    return out


def row_metrics(row: Mapping[str, Any], prefix: str = S.TEST_PREFIX) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` from a collected row's ``metrics.<prefix><task>/<metric>`` columns."""
    from results.collect import METRIC_COL

    out: dict[str, dict[str, float]] = {}
    for col, value in row.items():
        if not isinstance(col, str) or not col.startswith(METRIC_COL):
            continue
        parsed = S._parse_task_metric(col[len(METRIC_COL):], prefix)
        if parsed is None or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out.setdefault(parsed[0], {})[parsed[1]] = float(value)
    return out


def reference_for(
    df_or_runs: Any, dataset: str, arch: str, seed: int | None, average_seeds: bool = False
) -> dict[str, dict[str, float]]:
    """Test metrics of the dense reference for (dataset, arch, seed), or their mean over seeds.

    ``df_or_runs``: a frame from :func:`results.collect.collect` or an iterable of ``mlflow.entities.Run``.
    Several finished references for one seed (a re-run) → the latest one. None found → MissingReferenceError.
    """
    import pandas as pd

    from results.collect import runs_to_frame

    df = df_or_runs if isinstance(df_or_runs, pd.DataFrame) else runs_to_frame(list(df_or_runs))
    refs = reference_rows(df, dataset, arch)
    if not average_seeds:
        refs = refs[refs[S.TAG_SEED] == seed] if seed is not None else refs.iloc[0:0]
    if refs.empty:
        what = "any seed" if average_seeds else f"seed={seed}"
        raise MissingReferenceError(
            f"no dense reference run for dataset={dataset} arch={arch} {what} "
            f"(tags {S.TAG_ROLE}={S.ROLE_REFERENCE}, {S.TAG_METHOD}={S.DENSE_METHOD}, with test metrics); "
            "run the sweep's reference phase" + ("" if average_seeds else " or use the seed-averaged reference")
        )
    # latest finished reference per seed, then the mean over seeds
    refs = refs.sort_values("end_time", na_position="first").groupby(S.TAG_SEED, dropna=False).tail(1)
    per_seed = [row_metrics(r) for _, r in refs.iterrows()]
    out: dict[str, dict[str, float]] = {}
    for task in per_seed[0]:
        for m in per_seed[0][task]:
            vals = [p.get(task, {}).get(m) for p in per_seed]
            vals = [v for v in vals if v is not None]
            out.setdefault(task, {})[m] = math.fsum(vals) / len(vals)
    return out


def reference_rows(df: Any, dataset: str, arch: str) -> Any:
    """Rows of ``df`` that are finished dense references of (dataset, arch) with test metrics."""
    from results.collect import METRIC_COL

    mask = (df[S.TAG_ROLE] == S.ROLE_REFERENCE) & (df[S.TAG_METHOD] == S.DENSE_METHOD)
    mask &= (df[S.TAG_DATASET] == dataset) & (df[S.TAG_ARCH] == arch)
    test_cols = [c for c in df.columns if c.startswith(METRIC_COL + S.TEST_PREFIX)]
    if test_cols:
        mask &= df[test_cols].notna().any(axis=1)
    else:
        mask &= False
    return df[mask]
