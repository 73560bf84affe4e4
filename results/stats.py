"""How sure a table is: Student-t intervals over seeds, paired comparisons, and which cells may be bold.

Seeds pair naturally: runs with the same seed share the dense reference (ΔT is measured against it), the
data and the initialization, so the difference between two methods is taken seed by seed and its 95 %
interval is a one-sample Student t interval over those differences (a paired t test). A method's own ΔT is
already its paired difference to the dense model (the dense row is 0 by construction), so the interval of
its per-seed ΔT is the interval of that difference.

Marks (``rank_column``), per column with a direction, among the eligible rows (not the dense reference, not
off target, a value present):

* ``best``  — the leader, whose paired 95 % interval against *every* other eligible row excludes 0;
* ``tied``  — when some row's paired interval against the leader includes 0, the leader and every such row
  (they cannot be told apart at this n); nothing is ``best`` then;
* with one seed there is no interval: the leader is marked ``single`` (the caption says it is untested), and
  rows whose *printed* value equals the leader's are marked with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["CONFIDENCE", "paired_interval", "rank_column", "t_interval"]

CONFIDENCE = 0.95


def _t_quantile(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the 95 % Student t interval of the mean; NaN bounds below 2 values."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = _t_quantile(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def paired_interval(a: Mapping[object, float], b: Mapping[object, float]) -> tuple[float, float, float, int]:
    """Interval of mean(a_s − b_s) over the seeds both have: ``(mean, low, high, n_pairs)``."""
    seeds = [s for s in a if s in b and not (math.isnan(a[s]) or math.isnan(b[s]))]
    diffs = [a[s] - b[s] for s in seeds]
    mean, low, high = t_interval(diffs)
    return mean, low, high, len(seeds)


def rank_column(samples: Mapping[object, Mapping[object, float]], direction: str, eligible: Sequence[object],
                decimals: int) -> dict[object, str]:
    """Marks for one column: ``{row: "best" | "tied" | "single"}`` (rows without a mark are absent).

    ``samples[row][seed]`` are the per-seed values; ``direction`` is ``"higher"`` or ``"lower"``.
    """
    sign = 1.0 if direction == "higher" else -1.0
    means = {r: float(np.mean(list(samples[r].values()))) for r in eligible if samples.get(r)}
    means = {r: m for r, m in means.items() if not math.isnan(m)}
    if not means:
        return {}
    leader = max(means, key=lambda r: (sign * round(means[r], decimals), sign * means[r]))
    n_max = max(len(samples[r]) for r in means)
    if n_max < 2:
        printed = round(means[leader], decimals)
        return {r: "single" for r, m in means.items() if round(m, decimals) == printed}
    tied = []
    for r in means:
        if r == leader:
            continue
        lead = {s: sign * v for s, v in samples[leader].items()}
        other = {s: sign * v for s, v in samples[r].items()}
        _mean, low, _high, n = paired_interval(lead, other)
        if not (n >= 2 and low > 0):  # fewer than two pairs, or an interval reaching 0: not separable
            tied.append(r)
    if tied:
        return {r: "tied" for r in [leader, *tied]}
    return {leader: "best"}


def samples_frame(per_seed: pd.DataFrame, row: object, column: object) -> dict[object, float]:
    """``{seed: value}`` of one table cell from a per-seed frame indexed by (row, seed)."""
    sub = per_seed.xs(row, level=0)[column]
    return {s: float(v) for s, v in sub.items() if pd.notna(v)}
