"""Ranking rules on hand-made runs: bold only what the paired 95 % CI separates, ties, off-target rows,
single seeds, conventions that must not mix, and the budget/compute disclosure (real sqlite MLflow store).

Every run has one task (segment_semantic) with one metric (miou, higher is better), so a run's ΔT is
``(miou − dense_miou) / dense_miou · 100`` and the expected marks follow from the numbers below by hand.
"""

from __future__ import annotations

import math
import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from results import collect as C  # noqa: E402
from results import render as R  # noqa: E402
from results import schema as S  # noqa: E402
from results import tables as T  # noqa: E402
from results.stats import paired_interval, rank_column, t_interval  # noqa: E402
from results.terminal import to_terminal  # noqa: E402

DIRS = S.directions_to_tag({"segment_semantic": {"miou": "higher"}})
STANDARD = "standard:average=pooled,delta_nonpositive=outside,inclusive=False,miou_absent=present,normals=native"
OFFICIAL = "official:average=batch,delta_nonpositive=official,inclusive=True,miou_absent=ignore,normals=native"


def _store(tmp_path, rows, name="rank"):
    """rows: (method, seed, miou, achieved sparsity or None, extra tags, step equivalents)."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment(name)
    for i, (method, seed, miou, achieved, tags, steps) in enumerate(rows):
        run = client.create_run(exp, start_time=1000 + i)
        role = S.ROLE_REFERENCE if method == "dense" else S.ROLE_TRIAL
        all_tags = {S.TAG_METHOD: method, S.TAG_ARCH: "resnet34", S.TAG_DATASET: "synthetic_scenes",
                    S.TAG_SEED: str(seed), S.TAG_ROLE: role, S.TAG_DIRECTIONS: DIRS,
                    S.TAG_CONVENTIONS: STANDARD}
        if method != "dense":
            all_tags[S.TAG_TARGET_SPARSITY] = "0.9"
        all_tags.update(tags or {})
        metrics = [Metric(S.test_metric("segment_semantic", "miou"), miou, 0, 10)]
        if achieved is not None:
            metrics.append(Metric(S.final_sparsity(S.OVERALL), achieved, 0, 10))
        if steps is not None:
            metrics.append(Metric(S.COMPUTE_STEP_EQUIVALENTS, steps, 0, 10))
        client.log_batch(run.info.run_id, metrics=metrics,
                         tags=[RunTag(k, str(v)) for k, v in all_tags.items() if v is not None])
        client.set_terminated(run.info.run_id, end_time=2000 + i)
    return C.collect(name, tracking_uri=uri, use_cache=False)


def _dense(seeds=(0, 1, 2)):
    return [("dense", s, 50.0, None, None, 100.0) for s in seeds]


def test_t_interval_and_paired_interval_by_hand():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975, 2) = 4.302653 → half width 4.302653 / sqrt(3) = 2.484138
    assert mean == 2.0 and lo == pytest.approx(2 - 2.484138, abs=1e-5) and hi == pytest.approx(2 + 2.484138, abs=1e-5)
    assert all(math.isnan(v) for v in t_interval([5.0])[1:])
    m, lo, hi, n = paired_interval({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 9: 0.0})  # seeds 0, 1 pair
    assert n == 2 and m == 2.5 and lo == pytest.approx(2.5 - 12.7062 * math.sqrt(0.5) / math.sqrt(2), abs=1e-3)  # sd of (2, 3)


def test_rank_column_rules():
    separated = {"a": {0: 10.0, 1: 11.0, 2: 12.0}, "b": {0: 5.0, 1: 5.5, 2: 6.2}}
    assert rank_column(separated, "higher", ["a", "b"], 2) == {"a": "best"}
    assert rank_column(separated, "lower", ["a", "b"], 2) == {"b": "best"}
    noisy = {"a": {0: 10.0, 1: 2.0, 2: 12.0}, "b": {0: 9.0, 1: 5.0, 2: 6.0}}
    assert rank_column(noisy, "higher", ["a", "b"], 2) == {"a": "tied", "b": "tied"}
    single = {"a": {0: 1.004}, "b": {0: 1.001}, "c": {0: 0.5}}
    assert rank_column(single, "higher", ["a", "b", "c"], 2) == {"a": "single", "b": "single"}  # both print 1.00


def test_bold_only_when_the_paired_ci_separates(tmp_path):
    # A beats B by ~10 points of miou (20 ΔT points) on every seed; C is B plus noise
    rows = _dense() + [
        ("adapmtl", 0, 60.0, 0.9, None, 110.0), ("adapmtl", 1, 61.0, 0.9, None, 110.0),
        ("adapmtl", 2, 59.5, 0.9, None, 110.0),
        ("snip", 0, 50.0, 0.9, None, 100.5), ("snip", 1, 51.0, 0.9, None, 100.5), ("snip", 2, 49.0, 0.9, None, 100.5),
    ]
    t = T.tasks(_store(tmp_path, rows), sparsity=0.9)
    col = "ΔT ↑"
    assert t.marks.loc["AdapMTL", col] == "best" and t.marks.loc["SNIP", col] == ""
    assert t.best.loc["AdapMTL", col]
    assert "Bold: best, with a paired 95\\% CI" in t.caption and "n = 3 seeds" in t.caption
    lo, hi = t.ci[list(t.values.index).index("AdapMTL")]
    assert lo < t.values.loc["AdapMTL", col] < hi
    md = R.to_markdown(t)
    assert "**+20.33**" in md and "95% CI" in md
    assert "Metrics: standard definitions" in t.caption  # the conventions are named
    assert "AdapMTL 1.1$\\times$" in t.caption and "SNIP 1.0$\\times$" in t.caption  # compute disclosed


def test_overlapping_rows_are_tied_not_bold(tmp_path):
    rows = _dense() + [
        ("adapmtl", 0, 55.0, 0.9, None, None), ("adapmtl", 1, 46.0, 0.9, None, None),
        ("adapmtl", 2, 58.0, 0.9, None, None),
        ("snip", 0, 54.0, 0.9, None, None), ("snip", 1, 50.0, 0.9, None, None), ("snip", 2, 52.0, 0.9, None, None),
    ]
    t = T.tasks(_store(tmp_path, rows), sparsity=0.9)
    assert t.marks.loc["AdapMTL", "ΔT ↑"] == "tied" and t.marks.loc["SNIP", "ΔT ↑"] == "tied"
    assert not t.best["ΔT ↑"].any()
    tex = R.to_latex(t)
    assert "\\underline{" in tex and "\\textbf{" not in tex.split("\\midrule")[1]
    assert "underlined: tied for best" in t.caption


def test_off_target_row_is_never_bold_and_is_marked(tmp_path):
    # AdapMTL has the highest ΔT but ended at 78.8 % for a 90 % target
    rows = _dense() + [
        ("adapmtl", s, 70.0 + s, 0.788, None, None) for s in range(3)] + [
        ("snip", s, 55.0 + 0.1 * s, 0.9, None, None) for s in range(3)] + [
        ("lth", s, 45.0 + 0.1 * s, 0.9, None, None) for s in range(3)]
    t = T.tasks(_store(tmp_path, rows), sparsity=0.9)
    assert (t.marks.loc["AdapMTL"] == "").all()
    assert t.marks.loc["SNIP", "ΔT ↑"] == "best"
    i = list(t.values.index).index("AdapMTL")
    assert t.row_marks[i] == "† 78.8%"
    assert "AdapMTL † 78.8%" in R.to_markdown(t) and "$^\\dagger$ (78.8\\%)" in R.to_latex(t)
    assert "misses the target by more than 0.5" in t.caption
    assert "AdapMTL † 78.8%" in to_terminal(t, 100)


def test_single_seed_bold_is_labelled(tmp_path):
    rows = _dense((0,)) + [("adapmtl", 0, 55.0, 0.9, None, None), ("snip", 0, 52.0, 0.9, None, None)]
    t = T.tasks(_store(tmp_path, rows), sparsity=0.9)
    assert t.marks.loc["AdapMTL", "ΔT ↑"] == "single" and t.best.loc["AdapMTL", "ΔT ↑"]
    assert "Single seed (n = 1)" in t.caption and "not a significance test" in t.caption
    assert not t.ci


def test_tables_refuse_mixed_conventions(tmp_path):
    rows = _dense() + [("adapmtl", s, 55.0, 0.9, {S.TAG_CONVENTIONS: OFFICIAL if s == 2 else STANDARD}, None)
                       for s in range(3)]
    df = _store(tmp_path, rows)
    for kind in ("comparison", "tasks", "ablation", "cost", "sweep"):
        with pytest.raises(ValueError, match="different metric conventions"):
            T.build(kind, df)
    ok = df[df[f"tags.{S.TAG_CONVENTIONS}"] == STANDARD]
    assert "Metrics: standard definitions" in T.tasks(ok).caption


def test_budget_and_compute_in_the_caption(tmp_path):
    budget = {S.TAG_BUDGET_TRIALS: 16, S.TAG_BUDGET_SEARCHED: "lam,theta_init,window"}
    fixed = {S.TAG_BUDGET_TRIALS: 1, S.TAG_BUDGET_SEARCHED: "none"}
    rows = _dense() + [("adapmtl", s, 55.0, 0.9, budget, 100.0) for s in range(3)] + [
        ("lth", s, 50.0, 0.9, fixed, 200.0) for s in range(3)]
    t = T.comparison(_store(tmp_path, rows), sparsity=0.9)
    assert "Tuning budget per group (unequal)" in t.caption
    assert "AdapMTL: 16 trials over $\\lambda$, $\\theta$\\_init, window" in t.caption
    assert "LTH: 1 trial (no search)" in t.caption
    assert "LTH 2.0$\\times$" in t.caption
    cost = T.cost(_store(tmp_path / "c", rows, "rank2"))
    assert "Train (×dense)" in cost.values.columns
    assert cost.values.loc[("DeepLab-ResNet34", "LTH"), "Train (×dense)"] == pytest.approx(2.0)


def test_sweep_marks_off_target_cells(tmp_path):
    rows = _dense() + [("adapmtl", s, 70.0, 0.80, None, None) for s in range(3)] + [
        ("snip", s, 55.0 + s, 0.9, None, None) for s in range(3)]
    t = T.sweep(_store(tmp_path, rows))
    col = ("90%", "ΔT ↑")
    j = list(t.values.columns).index(col)
    i = list(t.values.index).index(("DeepLab-ResNet34", "AdapMTL"))
    assert t.cell_marks[(i, j)] == "†" and t.marks.iat[i, j] == ""
    data = T.sweep_data(_store(tmp_path / "d", rows, "rank3"))
    assert data.loc[data["method"] == "adapmtl", "off_target"].all()
    assert not data.loc[data["method"] == "snip", "off_target"].any()


def test_mixed_cpu_arithmetic_is_disclosed(tmp_path):
    """Runs with flushed and with IEEE denormals (trainers.denormals) are named in the caption; alike, nothing."""
    flushed, ieee = {S.TAG_FLUSH_DENORMALS: "true"}, {S.TAG_FLUSH_DENORMALS: "false"}
    same = [(m, s, v, 0.9 if m != "dense" else None, flushed, None) for m, v in (("dense", 50.0), ("snip", 52.0))
            for s in range(3)]
    assert "CPU arithmetic" not in T.comparison(_store(tmp_path / "a", same), sparsity=0.9).caption
    mixed = [("dense", s, 50.0, None, flushed, None) for s in range(3)] + [
        ("snip", s, 52.0, 0.9, ieee, None) for s in range(3)]
    caption = T.comparison(_store(tmp_path / "b", mixed, "rank-mixed"), sparsity=0.9).caption
    assert "CPU arithmetic differs between these runs" in caption
    assert "3 kept IEEE denormals" in caption and "flushed denormal floats to zero" in caption
    assert "flush\\_denormals" in caption  # captions are LaTeX
    assert "numerics/flush_denormals" in R.plain_caption(caption)
