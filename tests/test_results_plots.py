"""Figures: content checks (lines per method with the right y-data), PNG and PDF written."""

from __future__ import annotations

import shutil
import subprocess

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
    # display names, not registry keys (issue 14: "Depth head", not "head/depth_zbuffer")
    assert set(lines) == {"Backbone", "Semantic Seg. head", "Surface Normal head", "Depth head"}
    assert list(lines["Backbone"].get_ydata()) == pytest.approx([0, 22.5, 45, 67.5, 90])  # percent
    assert (tmp_path / "alloc.png").exists()
    fig = P.plot_weights(hist)
    assert set(_lines(fig.axes[0])) == {"Semantic Seg.", "Surface Normal", "Depth"}
    assert _lines(fig.axes[0])["Surface Normal"].get_ydata()[-1] == pytest.approx(1.1)
    with pytest.raises(ValueError, match="no sparsity/"):
        P.plot_allocation(hist[hist["key"].str.startswith("train/")])


def test_sensitivity_grid_has_a_legend_entry_per_method(df):
    scored = T.score_runs(df[df[S.TAG_ARCH] == "resnet34"])
    fig = P.plot_sensitivity(scored)
    ax = fig.axes[0]
    trials = scored[scored[S.TAG_ROLE] == "trial"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(trials)  # every trial, once
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["SNIP", "LTH", "AdapMTL", "AdapMTL w/o adaptive thresholds"]
    snip = next(c for c in ax.collections if c.get_label() == "SNIP")
    assert len(snip.get_offsets()) == (trials[S.TAG_METHOD] == "snip").sum()
    norms = {(c.norm.vmin, c.norm.vmax) for c in ax.collections}
    assert len(norms) == 1  # one colour scale for all methods (the colour bar's)
    assert TABLE1  # fixture data in use


def test_display_names_are_shared():
    from results import display_names as D

    assert D.component_name("head/depth_zbuffer") == "Depth head" and D.component_name("backbone") == "Backbone"
    assert D.series_name("sparsity/head/normal") == "Surface Normal head"
    assert D.series_name("train/weight/depth_zbuffer") == "Depth"
    assert D.series_name("test/depth_zbuffer/abs_err") == "Depth Abs." and D.series_name("val/delta_t") == "ΔT"
    assert D.method_name("adapmtl", "w/o λ") == "AdapMTL w/o λ" and D.method_name("snip") == "SNIP"
    assert D.task_name("new_task") == "new task"  # unknown names stay readable
    assert T.TASK_LABELS is D.TASK_LABELS  # the tables use the same mapping


@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="pdffonts not installed (apt: poppler-utils)")
def test_pdf_figures_embed_truetype_fonts(df, store, tmp_path):
    """ACM/IEEE checks reject Type 3 fonts (matplotlib's default); every PDF we write embeds TrueType."""
    P.plot_sweep(T.sweep_data(df), tmp_path / "sweep.pdf")
    rid = store["ids"]["adap_A0"]
    hist = C.metric_histories([rid], [], tracking_uri=store["uri"], prefixes=[S.TRAIN_WEIGHT_PREFIX])
    P.plot_weights(hist, tmp_path / "weights.pdf")  # "β" in the axis label
    P.plot_sensitivity(T.score_runs(df[df[S.TAG_ARCH] == "resnet34"]), tmp_path / "sens.pdf")
    for name in ("sweep.pdf", "weights.pdf", "sens.pdf"):
        out = subprocess.run(["pdffonts", str(tmp_path / name)], capture_output=True, text=True, check=True).stdout
        rows = out.strip().splitlines()[2:]  # after the header and its rule
        assert rows, out
        assert all("TrueType" in r and "yes" in r.split("TrueType", 1)[1] for r in rows), out  # embedded
        assert "Type 3" not in out, out
