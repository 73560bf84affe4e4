"""Tables from a real MLflow store, checked against hand-computed ΔT (both conventions)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from results import collect as C
from results import schema as S
from results import tables as T
from results.scores import MissingReferenceError, delta_t
from tests.results_fixtures import DIRECTIONS, SWEEP, TABLE1, as_metrics, sweep_store


@pytest.fixture(scope="module")
def df(tmp_path_factory):
    store = sweep_store(tmp_path_factory.mktemp("results_store"))
    return C.collect(SWEEP, tracking_uri=store["uri"], use_cache=False)


REF_A1 = list(TABLE1["dense"])
REF_A1[0] = 26.00


def dt(values, ref, convention="paper"):
    return delta_t(as_metrics(values), as_metrics(ref), DIRECTIONS, convention)


def test_comparison_layout_rows_and_paper_check(df):
    t = T.comparison(df, arch="resnet34")  # default sparsity: the one most methods cover (90 %)
    labels = list(t.values.index)
    assert labels[0] == "Dense Model"
    assert [lab.split(" (")[0] for lab in labels[1:]] == ["SNIP", "LTH", "AdapMTL w/o adaptive thresholds",
                                                         "AdapMTL"]
    groups = list(dict.fromkeys(t.values.columns.get_level_values(0)))
    assert groups == ["T1: Semantic Seg.", "T2: Surface Normal", "T3: Depth", "Sparsity %", ""]
    assert ("T1: Semantic Seg.", "mIoU ↑") in t.values.columns
    assert ("T2: Surface Normal", "Mean ↓") in t.values.columns
    assert list(t.values["Sparsity %"].columns) == ["BB", "S.S.", "S.N.", "D.E."]
    lth = t.values.loc["LTH"]
    # LTH has one seed (seed 0): its ΔT is the paper's Table 1 computation against the seed-0 reference
    exp = dt(TABLE1["lth"], TABLE1["dense"])
    assert lth[("T1: Semantic Seg.", "ΔT1 ↑")] == pytest.approx(exp["segment_semantic"])
    assert lth[("", "ΔT ↑")] == pytest.approx(exp["overall"])
    assert lth[("T1: Semantic Seg.", "ΔT1 ↑")] == pytest.approx(-0.35, abs=0.01)  # printed in Table 1
    assert lth[("Sparsity %", "BB")] == pytest.approx(78.32)
    assert t.n["LTH"] == 1 and t.n["SNIP"] == 2
    assert "sum over the task's metrics" in t.caption and "90\\%" in t.caption


def test_seed_mean_std_against_same_seed_reference(df):
    t = T.comparison(df, arch="resnet34", sparsity=0.9)
    s0 = dt(TABLE1["snip"], TABLE1["dense"])      # Table 1 SNIP: −11.00
    s1 = dt(TABLE1["adapmtl"], REF_A1)
    assert s0["overall"] == pytest.approx(-11.00, abs=0.005)
    snip = t.values.loc["SNIP"]
    assert snip[("", "ΔT ↑")] == pytest.approx((s0["overall"] + s1["overall"]) / 2)
    assert t.std.loc["SNIP", ("", "ΔT ↑")] == pytest.approx(statistics.stdev([s0["overall"], s1["overall"]]))
    assert snip[("T1: Semantic Seg.", "mIoU ↑")] == pytest.approx((24.09 + 26.28) / 2)
    # dense row: mean of the two references' metrics, ΔT exactly 0, no sparsity
    dense = t.values.iloc[0]
    assert dense[("T1: Semantic Seg.", "mIoU ↑")] == pytest.approx((25.54 + 26.00) / 2)
    assert dense[("", "ΔT ↑")] == 0.0 and np.isnan(dense[("Sparsity %", "BB")])


def test_trial_is_chosen_by_validation_not_test(df):
    t = T.comparison(df, arch="resnet34", sparsity=0.9)
    a0 = dt(TABLE1["adapmtl"], TABLE1["dense"])  # the val-best sample, not the 5 %-better-on-test one
    a1 = dt(TABLE1["adapmtl"], REF_A1)
    assert t.values.loc["AdapMTL", ("", "ΔT ↑")] == pytest.approx((a0["overall"] + a1["overall"]) / 2)
    assert a0["segment_semantic"] == pytest.approx(3.55, abs=0.01)  # Table 1 AdapMTL ΔT1


def test_marks_direction_and_skip_baseline(df):
    t = T.comparison(df, arch="resnet34", sparsity=0.9)
    marks = t.marks
    assert not (marks.iloc[0] != "").any()  # the dense reference never competes
    assert not (marks[("Sparsity %", "BB")] != "").any()
    # the leader of a lower-is-better column is the row with the smallest mean; with 2 seeds for AdapMTL and
    # SNIP but 1 for LTH nothing can be separated from it, so it is marked tied, not bold
    mean_col = ("T2: Surface Normal", "Mean ↓")
    winner = t.values.iloc[1:][mean_col].idxmin()
    assert marks.loc[winner, mean_col] == "tied"
    assert not t.best[mean_col].any()
    assert "underlined: tied for best" in t.caption and "n = 1–2 seeds" in t.caption


def test_mean_convention(df):
    t = T.comparison(df, arch="resnet34", sparsity=0.9, convention="mean")
    exp = dt(TABLE1["lth"], TABLE1["dense"], "mean")
    assert t.values.loc["LTH", ("", "ΔT ↑")] == pytest.approx(exp["overall"])
    assert t.values.loc["LTH", ("T2: Surface Normal", "ΔT2 ↑")] == pytest.approx(exp["normal"])
    assert "mean over the task's metrics (Eq. 7)" in t.caption


def test_missing_reference_is_a_clear_error_and_seed_average_fixes_it(df):
    no_ref1 = df[~((df[S.TAG_ROLE] == "reference") & (df[S.TAG_SEED] == 1))]
    with pytest.raises(MissingReferenceError, match="no dense reference run for dataset=nyuv2 arch=resnet34 seed=1"):
        T.comparison(no_ref1, arch="resnet34", sparsity=0.9)
    t = T.comparison(no_ref1, arch="resnet34", sparsity=0.9, average_seeds=True)
    exp = dt(TABLE1["adapmtl"], TABLE1["dense"])["overall"]  # seed-1 SNIP against the only (seed-0) reference
    s0 = dt(TABLE1["snip"], TABLE1["dense"])["overall"]
    assert t.values.loc["SNIP", ("", "ΔT ↑")] == pytest.approx((exp + s0) / 2)
    # with both references, the seed-averaged reference is their mean
    ref_mean = [(a + b) / 2 for a, b in zip(TABLE1["dense"], REF_A1)]
    t2 = T.comparison(df, arch="resnet34", sparsity=0.9, average_seeds=True)
    assert t2.values.loc["LTH", ("", "ΔT ↑")] == pytest.approx(dt(TABLE1["lth"], ref_mean)["overall"])


def test_tasks_table(df):
    t = T.tasks(df, arch="resnet34", sparsity=90)
    assert list(t.values.columns) == ["ΔT1 ↑", "ΔT2 ↑", "ΔT3 ↑", "Sparsity %", "ΔT ↑"]
    assert not any("baseline" in r for r in t.values.index)
    exp = dt(TABLE1["lth"], TABLE1["dense"])
    assert t.values.loc["LTH", "ΔT3 ↑"] == pytest.approx(exp["depth_zbuffer"])
    assert "T1: Semantic Seg., T2: Surface Normal, T3: Depth" in t.caption


def test_cost_table(df):
    t = T.cost(df, methods=["adapmtl"])
    idx = list(t.values.index)
    assert idx[0] == ("DeepLab-ResNet34", "Dense Model")
    assert list(t.values.columns) == ["Sparsity (%)", "Params (M)", "FLOPs (G)", "ΔT ↑"]
    resnet = t.values.loc["DeepLab-ResNet34"]
    assert list(resnet["Sparsity (%)"]) == pytest.approx([0.0, 50.0, 90.0, 90.0])  # dense, 50 %, 90 % (+ variant)
    assert resnet["Params (M)"].iloc[2] == pytest.approx(20.0)
    assert resnet["FLOPs (G)"].iloc[2] == pytest.approx(5.0)
    assert {a for a, _ in idx} == {"DeepLab-ResNet34", "MobileNetV2"}


def test_ablation_by_variant_tag_and_by_params(df):
    t = T.ablation(df, arch="resnet34", sparsity=0.9)
    assert list(t.values.index) == ["w/o adaptive thresholds", "AdapMTL"]  # the spec's labels, full last
    exp = dt(TABLE1["wo_thr"], TABLE1["dense"])
    assert t.values.loc["w/o adaptive thresholds", "ΔT ↑"] == pytest.approx(exp["overall"])
    assert exp["normal"] == pytest.approx(-7.06, abs=0.01)  # Table 5 row "w/o adaptive thresholds"
    assert list(t.values.columns)[-2:] == ["Sparsity %", "ΔT ↑"]
    assert t.values.loc["AdapMTL", "Sparsity %"] == pytest.approx(90.0)
    # without a variant tag, searched/varying parameters never make rows by themselves ...
    untagged = df.copy()
    untagged[S.TAG_VARIANT] = np.nan
    wo = untagged["run_id"] == df.loc[df[S.TAG_VARIANT] == "w/o adaptive thresholds", "run_id"].iloc[0]
    untagged.loc[wo, C.param_col("method.window")] = "1.23456789"
    assert list(T.ablation(untagged, arch="resnet34", sparsity=0.9).values.index) == ["AdapMTL"]
    # ... but named keys do, with rounded values
    labels = set(T.ablation(untagged, arch="resnet34", sparsity=0.9, keys=["window"]).values.index)
    assert labels == {"window=1.23", "AdapMTL"}


def test_sweep_table_and_data(df):
    data = T.sweep_data(df)
    a = data[(data["arch"] == "resnet34") & (data["method"] == "adapmtl") & (data["variant"] == "")]
    assert list(a["target"]) == [50.0, 90.0]
    exp50 = dt(TABLE1["adapmtl"], TABLE1["dense"])["overall"]
    assert a["dt_mean"].iloc[0] == pytest.approx(exp50)
    t = T.sweep(df)
    assert ("90%", "ΔT ↑") in t.values.columns and ("50%", "ΔT ↑") in t.values.columns
    assert t.values.loc[("MobileNetV2", "SNIP"), ("50%", "ΔT ↑")] != t.values.loc[("MobileNetV2", "SNIP"), (
        "50%", "ΔT ↑")]  # NaN: not run
    assert t.marks.loc[("DeepLab-ResNet34", "AdapMTL"), ("90%", "ΔT ↑")] == "tied"  # 2 seeds vs LTH's 1
    assert np.isfinite(a["ci_low"].iloc[1]) and a["ci_low"].iloc[1] < a["dt_mean"].iloc[1] < a["ci_high"].iloc[1]


def test_achieved_sparsity_shown_when_it_differs(df):
    off = df.copy()
    col = C.metric_col(S.final_sparsity(S.OVERALL))
    off.loc[off[S.TAG_METHOD] == "snip", col] = 0.85
    t = T.comparison(off, arch="resnet34", sparsity=0.9)
    assert ("Sparsity %", "Overall") in t.values.columns
    assert t.values.loc["SNIP", ("Sparsity %", "Overall")] == pytest.approx(85.0)
    assert "Achieved %" in set(T.sweep(off).values.columns.get_level_values(1))
    assert ("Sparsity %", "Overall") not in T.comparison(df, arch="resnet34", sparsity=0.9).values.columns


def test_unknown_selection_errors(df):
    with pytest.raises(ValueError, match="no run with arch 'vgg'"):
        T.comparison(df, arch="vgg")
    with pytest.raises(ValueError, match="unknown table kind"):
        T.build("nope", df)


def test_pick_trials_prefers_the_orchestrators_best_tag():
    """The orchestrator tags the trial with the best *penalised* objective; that one is reported even when
    another trial of the group has a higher raw val ΔT (e.g. it missed the sparsity target)."""
    import pandas as pd

    from results import schema as S
    from results.tables import metric_col, pick_trials

    runs = pd.DataFrame({
        "tags.method": ["adapmtl"] * 3, S.TAG_SEED: ["0"] * 3, "run_id": ["a", "b", "c"],
        metric_col(S.val_delta_t()): [5.0, 2.0, 1.0], "tags.best": ["false", "true", "false"],
        "end_time": [1, 2, 3],
    })
    assert pick_trials(runs, ["tags.method"])["run_id"].tolist() == ["b"]
    assert pick_trials(runs.drop(columns=["tags.best"]), ["tags.method"])["run_id"].tolist() == ["a"]
