"""The sweep's MLflow parent run as the story of the sweep, and a work directory that moves (issue 14,
item 11). Real sqlite stores written with the real client; no Ray (test_orchestrator.py checks the same
parent run after a real sweep)."""

from __future__ import annotations

import json
import shutil

import pytest

from orchestrator import tracking
from orchestrator.cli import main
from orchestrator.paths import SweepPaths
from orchestrator.sweep_report import export_results, log_summary
from tests.results_fixtures import SWEEP, sweep_store


def _local_sweep(workdir, name="moving"):
    """A sweep as `adapmtl run` leaves it: store + artifacts under workdir, state.json, parent + child."""
    uri = tracking.resolve_tracking_uri(None, workdir)
    tracking.check_reachable(uri)
    exp = tracking.ensure_experiment(uri, name)
    parent = tracking.get_or_create_parent(uri, exp, name, {"n_trials": 1})
    paths = SweepPaths(workdir, name).ensure()
    paths.spec.write_text(f"name: {name}\nmethods: {{dense: {{}}}}\n")
    c = tracking.client(uri)
    c.log_artifact(parent, str(paths.spec))
    child = tracking.create_run(uri, exp, run_name="dense", tags={"group": "dense-a", "role": "reference"},
                                parent_run_id=parent)
    c.set_terminated(child)
    c.set_terminated(parent)
    paths.write_state({"name": name, "workdir": str(workdir), "tracking_uri": uri, "parent_run_id": parent,
                       "storage": None, "done": True})
    return uri, parent


def test_moved_workdir_is_detected_and_relocated(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    old, new = tmp_path / "a" / ".adapmtl", tmp_path / "b" / "wd"
    _, parent = _local_sweep(old)
    new.parent.mkdir()
    shutil.move(str(old), str(new))
    new_uri = tracking.resolve_tracking_uri(None, new)

    with pytest.raises(tracking.StoreMovedError, match=rf"adapmtl relocate {new}"):
        tracking.ensure_experiment(new_uri, "moving")  # `run`/`resume` would write artifacts to the old place
    assert main(["status", "moving", "--workdir", str(new)]) == 2
    assert f"run `adapmtl relocate {new}` first" in capsys.readouterr().err
    assert not old.exists()  # detecting never recreates the old place

    assert main(["relocate", str(new), "--dry-run"]) == 0
    assert "would update experiment 'moving'" in capsys.readouterr().err
    with pytest.raises(tracking.StoreMovedError):
        tracking.ensure_experiment(new_uri, "moving")  # a dry run changes nothing

    assert main(["relocate", str(new)]) == 0
    err = capsys.readouterr().err
    assert f"experiment 'moving': artifacts {old / 'mlartifacts'} → {new / 'mlartifacts'} (2 run(s))" in err
    assert "state.json: paths updated" in err
    tracking.ensure_experiment(new_uri, "moving")  # no complaint any more
    c = tracking.client(new_uri)
    assert [a.path for a in c.list_artifacts(parent)] == ["spec.yaml"]
    assert (new / "mlartifacts").as_uri() in c.get_run(parent).info.artifact_uri
    c.download_artifacts(parent, "spec.yaml", str(tmp_path))
    state = json.loads((new / "sweeps" / "moving" / "state.json").read_text())
    assert state["workdir"] == str(new) and state["tracking_uri"] == new_uri
    assert main(["status", "moving", "--workdir", str(new)]) == 0
    assert "sweep moving: done · finished 1" in capsys.readouterr().out
    assert main(["relocate", str(new)]) == 0 and "nothing to relocate" in capsys.readouterr().err
    assert not old.exists()


def test_relocate_without_a_store_is_one_line(tmp_path, capsys):
    assert main(["relocate", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"adapmtl: error: no MLflow store at {tmp_path / 'mlflow.db'}")


def test_parent_run_carries_summary_and_exported_results(tmp_path_factory):
    store = sweep_store(tmp_path_factory.mktemp("results_store"))
    uri, parent = store["uri"], store["ids"]["parent"]
    c = tracking.client(uri)
    kids = [c.get_run(rid) for name, rid in store["ids"].items() if name != "parent"]
    best = {"adapmtl-a": {"objective": 2.0, "test_delta_t": 1.5}, "snip-a": {"objective": -5.0, "test_delta_t": None}}
    logged = log_summary(uri, parent, kids, best)
    metrics = c.get_run(parent).data.metrics
    assert metrics["summary/runs"] == len(kids) and metrics["summary/finished"] == len(kids)
    assert metrics["best/test_delta_t/adapmtl-a"] == 1.5 and metrics["best/val_objective/snip-a"] == -5.0
    assert "best/test_delta_t/snip-a" not in metrics and logged == {k: metrics[k] for k in logged}

    out = tmp_path_factory.mktemp("exported")
    files = export_results(SWEEP, uri, parent, out)
    names = {p.name for p in files}
    assert {"comparison.tex", "comparison.md", "sweep.tex", "tasks.tex", "cost.tex", "ablation.tex",
            f"{SWEEP}.bib", "sweep.png", "sweep.pdf", "sensitivity.png"} <= names, names
    assert not [n for n in names if n.endswith(".bib") and n != f"{SWEEP}.bib"]  # one .bib for the sweep
    artifacts = {a.path for a in c.list_artifacts(parent, "results")}
    assert artifacts == {f"results/{n}" for n in names}
    assert "\\cite{lee2018snip}" in (out / "sweep.tex").read_text()
