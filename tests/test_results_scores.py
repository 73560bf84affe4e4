"""ΔT (DESIGN §3.5) on the paper's own numbers: Table 1 SNIP row (METHODS_SPEC §7)."""

from __future__ import annotations

import pytest

from results.scores import BUILTIN_DIRECTIONS, builtin_directions, delta_t
from tests.results_fixtures import DIRECTIONS, TABLE1, as_metrics


def test_paper_convention_reproduces_table1_snip():
    dt = delta_t(as_metrics(TABLE1["snip"]), as_metrics(TABLE1["dense"]), DIRECTIONS)
    # −5.68 (mIoU) − 4.47 (PixAcc) = −10.15; printed ΔT2 = 2.63, ΔT3 = −25.49, ΔT = −11.00
    assert dt["segment_semantic"] == pytest.approx(-10.15, abs=0.005)
    assert dt["normal"] == pytest.approx(2.63, abs=0.005)
    assert dt["depth_zbuffer"] == pytest.approx(-25.49, abs=0.005)
    assert dt["overall"] == pytest.approx(-11.00, abs=0.005)


def test_mean_convention_divides_each_task_by_its_metric_count():
    paper = delta_t(as_metrics(TABLE1["snip"]), as_metrics(TABLE1["dense"]), DIRECTIONS)
    mean = delta_t(as_metrics(TABLE1["snip"]), as_metrics(TABLE1["dense"]), DIRECTIONS, convention="mean")
    assert mean["segment_semantic"] == pytest.approx(paper["segment_semantic"] / 2)
    assert mean["normal"] == pytest.approx(paper["normal"] / 5)
    assert mean["depth_zbuffer"] == pytest.approx(paper["depth_zbuffer"] / 5)
    assert mean["overall"] == pytest.approx((paper["segment_semantic"] / 2 + paper["normal"] / 5
                                             + paper["depth_zbuffer"] / 5) / 3)


def test_single_terms_by_hand():
    ref = {"a": {"x": 50.0, "y": 2.0}}
    dirs = {"a": {"x": "higher", "y": "lower"}}
    dt = delta_t({"a": {"x": 55.0, "y": 1.5}}, ref, dirs)
    assert dt["a"] == pytest.approx(10.0 + 25.0)
    assert dt["overall"] == pytest.approx(35.0)
    assert delta_t({"a": {"x": 55.0, "y": 1.5}}, ref, dirs, "mean")["a"] == pytest.approx(17.5)
    assert delta_t(ref, ref, dirs)["overall"] == 0.0


@pytest.mark.parametrize(
    ("reference", "directions", "match"),
    [
        ({"a": {"y": 1.0}}, {"a": {"x": "higher", "y": "lower"}}, "reference has no value for a/x"),
        ({"a": {"x": 0.0, "y": 1.0}}, {"a": {"x": "higher", "y": "lower"}}, "a/x is zero"),
        ({"a": {"x": 1.0, "y": 1.0}}, {"a": {"x": "higher"}}, "no direction .* for a/y"),
    ],
)
def test_errors_name_the_metric(reference, directions, match):
    with pytest.raises(ValueError, match=match) as info:
        delta_t({"a": {"x": 1.0, "y": 1.0}}, reference, directions)
    assert "\n" not in str(info.value)


def test_unknown_convention_and_builtin_directions():
    with pytest.raises(ValueError, match="convention"):
        delta_t({"a": {"x": 1.0}}, {"a": {"x": 1.0}}, {"a": {"x": "higher"}}, convention="median")  # type: ignore[arg-type]
    got = builtin_directions({t: list(m) for t, m in DIRECTIONS.items()})
    assert got == DIRECTIONS
    assert BUILTIN_DIRECTIONS["cosine_similarity"] == "higher"
    with pytest.raises(ValueError, match="no direction for metric t/novel"):
        builtin_directions({"t": ["novel"]})
    assert builtin_directions({"t": ["novel"]}, {"t": {"novel": "lower"}}) == {"t": {"novel": "lower"}}
