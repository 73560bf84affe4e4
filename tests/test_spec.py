"""SweepSpec validation: every malformed spec is one line on stderr and exit code 2, before Ray starts."""

from __future__ import annotations

import copy
import socket
import time

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.plan import build_plan
from orchestrator.spec import SpecError, parse_spec

TINY = {
    "name": "tiny",
    "dataset": {"name": "synthetic_scenes", "resolution": 32, "tasks": ["segment_semantic", "normal"]},
    "architectures": ["resnet34"],
    "model": {"width": 0.125, "head_channels": 16},
    "methods": {"dense": {}, "snip": {}, "imp": {"prune_fraction_per_round": 0.3}},
    "sparsities": [0.5, 0.9],
    "seeds": [0],
    "train": {"iterations": 6, "batch_size": 4, "val_every": 3, "log_every": 3, "checkpoint_every": 3},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set(d: dict, dotted: str, value: object) -> dict:
    d = copy.deepcopy(d)
    *path, last = dotted.split(".")
    cur = d
    for p in path:
        cur = cur.setdefault(p, {})
    if value is _DELETE:
        cur.pop(last, None)
    else:
        cur[last] = value
    return d


_DELETE = object()

# (case id, key to change, value, extra CLI args, expected fragment of the one-line error)
CASES = [
    ("unknown-method", "methods", {"dense": {}, "magic": {}}, [], "unknown method"),
    ("unknown-arch", "architectures", ["vgg16"], [], "unknown architecture"),
    ("unknown-dataset", "dataset.name", "imagenet", [], "unknown dataset"),
    ("unknown-task", "dataset.tasks", ["segment_semantic", "optical_flow"], [], "unknown task"),
    ("sparsity-above-1", "sparsities", [0.5, 1.2], [], "outside (0, 1)"),
    ("sparsity-zero", "sparsities", [0.0], [], "outside (0, 1)"),
    ("empty-architectures", "architectures", [], [], "architectures is empty"),
    ("empty-sparsities", "sparsities", [], [], "grid would be empty"),
    ("empty-methods", "methods", {}, [], "methods is empty"),
    ("unknown-method-param", "methods.snip", {"bogus": 1}, [], "bogus"),
    ("bad-bounds", "methods.imp", {"search": {"end_fraction": {"type": "uniform", "low": 0.9, "high": 0.1}},
                                   "samples": 2}, [], "must be < high"),
    ("log-bound-nonpositive", "methods.imp", {"search": {"end_fraction": {"type": "loguniform", "low": 0.0,
                                                                          "high": 0.5}}}, [], "low > 0"),
    ("unknown-param-type", "methods.imp", {"search": {"end_fraction": {"type": "gaussian", "low": 0.1,
                                                                       "high": 0.5}}}, [], "type must be"),
    ("unknown-top-level-key", "colour", "blue", [], "colour"),
    ("missing-name", "name", _DELETE, [], "name"),
    ("bad-name", "name", "a b/c", [], "name"),
    ("unreadable-root", "dataset", {"name": "nyuv2", "root": "/nonexistent/nyuv2"}, [], "does not exist"),
    ("unreachable-tracking", None, None, ["--tracking-uri", "http://127.0.0.1:{port}"], "unreachable"),
    ("unreachable-ray", "ray.address", "127.0.0.1:{port}", [], "Ray address"),
]


@pytest.mark.parametrize("case,key,value,args,fragment", CASES, ids=[c[0] for c in CASES])
def test_malformed_spec_is_one_line_exit_2(tmp_path, capsys, case, key, value, args, fragment):
    port = _free_port()
    data = TINY if key is None else _set(TINY, key, value)
    text = yaml.safe_dump(data).replace("{port}", str(port))
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    args = [a.replace("{port}", str(port)) for a in args]
    t0 = time.monotonic()
    rc = main(["run", str(spec), "--workdir", str(tmp_path / "wd"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err
    assert time.monotonic() - t0 < 60  # nothing was trained
    import ray

    assert not ray.is_initialized()


def test_invalid_yaml_and_missing_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert main(["run", str(bad), "--dry-run"]) == 2
    assert main(["run", str(tmp_path / "missing.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "invalid YAML" in err[0] and "cannot read spec" in err[1]


def test_dry_run_prints_the_plan(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(spec), "--dry-run", "--workdir", str(tmp_path / "wd")]) == 0
    out = capsys.readouterr().out
    assert "1 reference(s), 4 group(s), 5 trial(s)" in out
    for g in ("snip-synthetic_scenes-resnet34-sp0.5-seed0", "imp-synthetic_scenes-resnet34-sp0.9-seed0",
              "dense-synthetic_scenes-resnet34-seed0"):
        assert g in out
    assert not (tmp_path / "wd" / "mlflow.db").exists()  # a dry run creates no store


def test_plan_expands_grid_and_search():
    space = {"prune_fraction_per_round": {"type": "uniform", "low": 0.1, "high": 0.5},
             "round_iterations": {"type": "choice", "values": [1, 2]}}
    data = _set(TINY, "methods.imp", {"search": space, "samples": 3, "prune_fraction_per_round": 0.3})
    data["seeds"] = [0, 1]
    plan = build_plan(parse_spec(data))
    assert [r.id for r in plan.references] == ["dense-synthetic_scenes-resnet34-seed0",
                                                "dense-synthetic_scenes-resnet34-seed1"]
    assert len(plan.groups) == 2 * 2 * 2
    imp = [g for g in plan.groups if g.method == "imp"]
    # a parameter fixed in the spec is not searched
    assert all(set(g.space) == {"round_iterations"} and g.samples == 3 for g in imp)
    assert all(g.base["method_params"]["prune_fraction_per_round"] == 0.3 for g in imp)
    assert plan.n_trials == 2 + 2 * 2 * 1 + 2 * 2 * 3
    # run identity of references is stable across plans
    again = build_plan(parse_spec(data))
    assert [r.run_key for r in again.references] == [r.run_key for r in plan.references]


def test_grid_search_needs_choices():
    data = _set(TINY, "methods.imp", {"search": "default"})
    data["search"] = {"algorithm": "grid"}
    with pytest.raises(SpecError, match="grid search needs choice"):
        build_plan(parse_spec(data))


def test_search_space_loader_and_conversion():
    from ray import tune

    from search_spaces import check_param, representative, space_for, to_tune

    assert space_for("dense").space == {} and space_for("dense").fixed == {}
    assert space_for("no_such_method").space == {}
    assert isinstance(to_tune({"type": "loguniform", "low": 1e-3, "high": 1e-1}), tune.search.sample.Float)
    d = to_tune({"type": "int", "low": 1, "high": 3})
    assert {d.sample() for _ in range(200)} <= {1, 2, 3}
    assert to_tune([1, 2]).categories == [1, 2]
    assert representative({"type": "choice", "values": ["a", "b"]}) == "a"
    with pytest.raises(ValueError, match="empty choice"):
        check_param("x", [])


def test_objective_penalises_sparsity_shortfall():
    from orchestrator.trial import TrialContext, objective

    ctx = TrialContext(sweep="s", tracking_uri="", experiment_id="", parent_run_id="", runs_dir="", storage="",
                       git_sha="", units={}, penalty=1.0, tolerance=0.005)
    flat = {"val/delta_t": 2.0, "sparsity/overall": 0.80}
    assert objective(flat, 0.9, ctx) == pytest.approx(2.0 - (0.9 - 0.80 - 0.005) * 100)
    assert objective({**flat, "sparsity/overall": 0.95}, 0.9, ctx) == 2.0  # sparser than asked: no penalty
    assert objective({**flat, "sparsity/overall": 0.897}, 0.9, ctx) == 2.0  # within tolerance
    ctx.mode = "min"
    assert objective(flat, 0.9, ctx) > 2.0
    assert objective({"sparsity/overall": 0.9}, 0.9, ctx) is None


def test_ablation_example_rows_differ_and_equivalent_variants_warn(tmp_path, capsys):
    from pathlib import Path

    from orchestrator.spec import load_spec

    example = Path(__file__).resolve().parent.parent / "examples" / "ablation_nyuv2.yaml"
    assert build_plan(load_spec(example)).warnings == []  # every Table 5 row is a different configuration
    data = copy.deepcopy(TINY)
    data["methods"] = {
        "dense": {},
        "adapmtl": {},
        "adapmtl@no_lambda": {"label": "w/o λ", "use_lambda": False},
        # the earlier default units: factor lam = 1 on every architecture, i.e. exactly "w/o λ"
        "adapmtl@normalized": {"lam_units": "normalized", "lam": 1.0},
        # inert under equal weighting: the window and λ do nothing, so these two are the same run
        "adapmtl@eq": {"weighting": "equal"},
        "adapmtl@eq_window": {"weighting": "equal", "window": 7, "lam": 3.0},
    }
    plan = build_plan(parse_spec(data))
    assert len(plan.warnings) == 2
    assert "adapmtl@normalized and methods.adapmtl@no_lambda" in plan.warnings[0]
    assert "adapmtl@eq_window and methods.adapmtl@eq" in plan.warnings[1]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    assert main(["run", str(spec), "--dry-run", "--workdir", str(tmp_path / "wd")]) == 0
    assert capsys.readouterr().out.count("warning: methods.adapmtl@") == 2


def test_equal_budget_gives_every_searched_method_the_same_trial_count():
    data = copy.deepcopy(TINY)
    data["methods"] = {"dense": {}, "snip": {}, "imp": {}, "disparse": {},
                       "adapmtl": {"search": "default", "samples": 16}, "lth": {}}
    per_method = build_plan(parse_spec(data))
    counts = {g.method: g.budget for g in per_method.groups}
    assert counts["adapmtl"] == 16 and counts["snip"] == 1  # the paper-reproduction default: unequal
    data["methods"]["adapmtl"] = {"search": "default"}
    data["search"] = {"budget": "equal", "trials_per_group": 4}
    equal = build_plan(parse_spec(data))
    assert {g.budget for g in equal.groups} == {4}  # every method here has a search space
    assert all(g.searched for g in equal.groups)
    assert equal.n_trials == len(equal.references) + 4 * len(equal.groups)
    data["search"] = {"budget": "equal", "trials_per_group": 1}
    defaults = build_plan(parse_spec(data))
    assert all(not g.searched and g.budget == 1 for g in defaults.groups)  # everyone with its defaults
    data["search"] = {"budget": "equal"}
    with pytest.raises(SpecError, match="trials_per_group"):
        build_plan(parse_spec(data))
    data["search"] = {"budget": "equal", "trials_per_group": 4}
    data["methods"]["adapmtl"] = {"search": "default", "samples": 16}
    with pytest.raises(SpecError, match="contradicts search.budget"):
        build_plan(parse_spec(data))
