"""collect(): real MLflow sqlite store → tidy frame; cache hit/miss; SQL fast path == search_runs path."""

from __future__ import annotations

import pandas as pd
import pandas.testing as pdt
import pytest

from results import collect as C
from results import schema as S
from tests.results_fixtures import SWEEP, log_run, sweep_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return sweep_store(tmp_path_factory.mktemp("results_store"))


def test_one_row_per_run_with_typed_identity_columns(store, tmp_path):
    df = C.collect(SWEEP, tracking_uri=store["uri"], cache_dir=tmp_path)
    assert len(df) == len(store["ids"])
    assert set(df["run_id"]) == set(store["ids"].values())
    row = df.set_index("run_id").loc[store["ids"]["snip_A0"]]
    assert row[S.TAG_METHOD] == "snip" and row[S.TAG_ROLE] == "trial" and row[S.TAG_ARCH] == "resnet34"
    assert row[S.TAG_TARGET_SPARSITY] == 0.9 and row[S.TAG_SEED] == 0
    assert row[C.metric_col("test/segment_semantic/miou")] == 24.09
    assert row[C.metric_col(S.final_sparsity(S.BACKBONE))] == pytest.approx(0.8546)
    assert row[C.param_col("train.lr")] == "0.001"
    assert row["run_status"] == "FINISHED"
    assert df[S.TAG_SEED].dtype == "Int64" and df[S.TAG_TARGET_SPARSITY].dtype == "float64"
    assert S.directions_from_tag(row[f"{C.TAG_COL}{S.TAG_DIRECTIONS}"])["normal"]["angle_mean"] == "lower"


def test_sql_fast_path_equals_search_runs(store, tmp_path):
    fast = C.collect(SWEEP, tracking_uri=store["uri"], use_cache=False)
    slow = C.collect(SWEEP, tracking_uri=store["uri"], use_cache=False, fast_sql=False)
    pdt.assert_frame_equal(fast, slow)


def test_second_call_reads_cache_and_a_new_run_invalidates_it(store, tmp_path, monkeypatch):
    first = C.collect(SWEEP, tracking_uri=store["uri"], cache_dir=tmp_path)
    assert list(tmp_path.glob("runs-*.parquet"))

    def boom(*a, **k):
        raise AssertionError("store was read although nothing changed")

    monkeypatch.setattr(C._SqlSource, "read_frame", boom)
    monkeypatch.setattr(C, "_search_all", boom)
    pdt.assert_frame_equal(C.collect(SWEEP, tracking_uri=store["uri"], cache_dir=tmp_path), first)
    monkeypatch.undo()

    from mlflow.tracking import MlflowClient

    exp = store["experiment_id"]
    client = MlflowClient(store["uri"])
    extra = log_run(client, exp, method="lth", arch="resnet34", seed=9, target=0.7, values=None, role="other")
    try:
        again = C.collect(SWEEP, tracking_uri=store["uri"], cache_dir=tmp_path)
        assert len(again) == len(first) + 1 and extra in set(again["run_id"])
    finally:
        client.delete_run(extra)
    assert len(C.collect(SWEEP, tracking_uri=store["uri"], cache_dir=tmp_path)) == len(first)


def test_filter_string_uses_search_runs(store, tmp_path):
    df = C.collect(SWEEP, tracking_uri=store["uri"], filter_string="tags.method = 'snip'", cache_dir=tmp_path)
    assert set(df[S.TAG_METHOD]) == {"snip"} and len(df) == 5


def test_clear_errors(store, tmp_path):
    with pytest.raises(C.CollectError, match="no MLflow experiment named 'nope'"):
        C.collect("nope", tracking_uri=store["uri"])
    with pytest.raises(C.CollectError, match="no MLflow store at"):
        C.collect(SWEEP, tracking_uri=f"sqlite:///{tmp_path / 'missing.db'}")


def test_metric_histories_only_for_requested_runs(store):
    rid = store["ids"]["adap_A0"]
    hist = C.metric_histories([rid], [], tracking_uri=store["uri"], prefixes=[S.SPARSITY_PREFIX])
    assert set(hist["key"]) == {S.sparsity(S.BACKBONE)} | {S.sparsity(S.head(t)) for t in
                                                          ("segment_semantic", "normal", "depth_zbuffer")}
    assert sorted(hist.loc[hist["key"] == "sparsity/backbone", "step"]) == [0, 25, 50, 75, 100]
    assert isinstance(hist, pd.DataFrame) and set(hist["run_id"]) == {rid}
