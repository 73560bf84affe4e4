"""Figures: content checks (lines per method with the right y-data), PNG and PDF written."""

from __future__ import annotations

import pytest

from results import collect as C
from results import plots as P
from results import schema as S
from results import tables as T
from tests.results_fixtures import SWEEP, TABLE1, sweep_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return sweep_store(tmp_path_factory.mktemp("results_store"))


@pytest.fixture(scope="module")
def df(store):
    return C.collect(SWEEP, tracking_uri=store["uri"], use_cache=False)


def _lines(ax):
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def test_sweep_plot_has_one_line_per_method_with_data(df, tmp_path):
    data = T.sweep_data(df)
    fig = P.plot_sweep(data, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0 and (tmp_path / "sweep.pdf").stat().st_size > 0
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["DeepLab-ResNet34", "MobileNetV2"]
    resnet = _lines(fig.axes[0])
    assert set(resnet) == {"SNIP", "LTH", "AdapMTL", "AdapMTL w/o adaptive thresholds"}
    adap = data[(data["arch"] == "resnet34") & (data["method"] == "adapmtl") & (data["variant"] == "")]
    assert list(resnet["AdapMTL"].get_xdata()) == [50.0, 90.0]
    assert list(resnet["AdapMTL"].get_ydata()) == pytest.approx(list(adap["dt_mean"]))
    assert set(_lines(fig.axes[1])) == {"SNIP", "AdapMTL"}


def test_allocation_and_weights_from_histories(store, tmp_path):
    rid = store["ids"]["adap_A0"]
    hist = C.metric_histories([rid], [], tracking_uri=store["uri"],
                              prefixes=[S.SPARSITY_PREFIX, S.TRAIN_WEIGHT_PREFIX])
    fig = P.plot_allocation(hist, tmp_path / "alloc.pdf")
    lines = _lines(fig.axes[0])
    assert set(lines) == {"backbone", "head/segment_semantic", "head/normal", "head/depth_zbuffer"}
    assert list(lines["backbone"].get_ydata()) == pytest.approx([0, 22.5, 45, 67.5, 90])  # percent
    assert (tmp_path / "alloc.png").exists()
    fig = P.plot_weights(hist)
    assert set(_lines(fig.axes[0])) == {"segment_semantic", "normal", "depth_zbuffer"}
    assert _lines(fig.axes[0])["normal"].get_ydata()[-1] == pytest.approx(1.1)
    with pytest.raises(ValueError, match="no sparsity/"):
        P.plot_allocation(hist[hist["key"].str.startswith("train/")])


def test_sensitivity_grid(df):
    scored = T.score_runs(df[df[S.TAG_ARCH] == "resnet34"])
    fig = P.plot_sensitivity(scored)
    offsets = fig.axes[0].collections[0].get_offsets()
    assert len(offsets) == (scored[S.TAG_ROLE] == "trial").sum()
    assert TABLE1  # fixture data in use
