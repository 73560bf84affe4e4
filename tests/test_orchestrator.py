"""Sweeps on a real local Ray with a real sqlite MLflow store (no mocks).

Each test starts its own embedded Ray through the ``adapmtl`` CLI in a subprocess (explicit address, own
temp dir), so a killed driver or worker is a real killed process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
IDENTITY_TAGS = ("sweep", "method", "arch", "dataset", "target_sparsity", "seed", "role", "trial_id", "git_sha",
                 "status", "run_key")

TINY_TRAIN = {"iterations": 6, "batch_size": 4, "val_every": 3, "log_every": 3, "checkpoint_every": 3,
              "max_eval_batches": 2}


def tiny_spec(name: str, methods: dict, sparsities: list[float], **extra) -> dict:
    spec = {
        "name": name,
        "dataset": {"name": "synthetic_scenes", "resolution": 32, "tasks": ["segment_semantic", "normal"],
                    "options": {"n_train": 64, "n_val": 16, "n_test": 16}},
        "architectures": ["resnet34"],
        "model": {"width": 0.125, "head_channels": 16},
        "methods": methods,
        "sparsities": sparsities,
        "seeds": [0],
        "train": dict(TINY_TRAIN),
    }
    spec.update(extra)
    return spec


def env(**kw: str) -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0")
    e.pop("RAY_ADDRESS", None)
    e.pop("MLFLOW_TRACKING_URI", None)
    e.update(kw)
    return e


def adapmtl(*args: str, cwd: Path, timeout: float = 400, **envkw: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env(**envkw),
                          capture_output=True, text=True, timeout=timeout)


def write(tmp: Path, spec: dict) -> Path:
    p = tmp / f"{spec['name']}.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def runs_of(workdir: Path, name: str) -> list:
    """Runs of the sweep ``name``; a store that does not exist yet has none (and is not created here: a test
    polling while a driver creates the store would race its schema migration)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.store import creation_lock

    db = workdir / "mlflow.db"
    if not db.exists():
        return []
    with creation_lock(db):
        c = MlflowClient(tracking_uri=f"sqlite:///{db}")
        exp = c.get_experiment_by_name(name)
        return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)


def check_sweep(runs: list, name: str, n_children: int) -> tuple:
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert len(parents) == 1, [r.data.tags for r in parents]
    parent = parents[0]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(kids) == len(runs) - 1 == n_children, [(r.info.run_name, r.info.status) for r in runs]
    keys = Counter(r.data.tags["run_key"] for r in kids)
    assert max(keys.values()) == 1, f"duplicate runs: {keys}"
    for r in kids:
        assert r.info.status == "FINISHED", (r.info.run_name, r.data.tags.get("failure_reason"))
        for tag in IDENTITY_TAGS:
            assert tag in r.data.tags, (tag, r.info.run_name)
        assert r.data.tags["sweep"] == name and r.data.tags["status"] == "finished"
        m = r.data.metrics
        assert "test/segment_semantic/miou" in m and "final/sparsity/overall" in m and "final/flops_sparse" in m
        assert r.data.params["model.arch"] == "resnet34"
        if r.data.tags["role"] == "trial":
            assert "val/delta_t" in m and "test/delta_t" in m and "val/objective" in m
            assert float(r.data.tags["target_sparsity"]) == pytest.approx(m["final/sparsity/overall"], abs=0.02)
            assert r.data.tags.get("best") == "true"  # one trial per fixed group: it is the best
    assert parent.info.status == "FINISHED"
    return parent, kids


@pytest.mark.integration
def test_run_tiny_sweep_tracks_everything_and_survives_a_killed_worker(tmp_path):
    """2 methods x 2 sparsities x 1 seed on the direct path; one trial process is SIGKILLed mid-run and is
    retried by Tune from the engine checkpoint."""
    spec = write(tmp_path, tiny_spec("tiny-run", {"dense": {}, "snip": {}, "imp": {}}, [0.5, 0.8]))
    wd = tmp_path / "wd"
    t0 = time.monotonic()
    proc = adapmtl("run", str(spec), "--workdir", str(wd), cwd=tmp_path, ADAPMTL_FAULT_KILL_AT_STEP="4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"sweep wall time {time.monotonic() - t0:.0f} s")
    assert "5/5 trials" in proc.stderr  # the live status line: one Tuner for the reference and the 4 trials
    assert "Token authentication is enabled" not in proc.stderr  # auth on, without Ray's warning
    # the retried worker failure is one line, not Tune's ActorDiedError traceback
    # ("after step 3" when the driver had seen the trial's step-3 report before the kill, which is a race)
    assert re.search(r"worker died( after step 3)?, retrying from checkpoint \(retry 1 of \d+\)", proc.stderr), \
        proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "ActorDiedError" not in proc.stderr, proc.stderr[-3000:]
    parent, kids = check_sweep(runs_of(wd, "tiny-run"), "tiny-run", n_children=1 + 2 * 2)
    resumed = [r for r in kids if "resumed_from_step" in r.data.tags]
    assert len(resumed) == 1 and resumed[0].data.tags["resumed_from_step"] == "3"
    assert (wd / "sweeps" / "tiny-run" / "runs" / "fault_injected").exists()
    # the parent run tells the story in the MLflow UI: counts, best ΔT per group, spec, tables and plots
    pm = parent.data.metrics
    assert pm["summary/finished"] == 5 and pm["summary/failed"] == 0
    best = {r.data.tags["group"]: r.data.metrics["test/delta_t"] for r in kids if r.data.tags.get("role") == "trial"}
    assert {g: pm[f"best/test_delta_t/{g}"] for g in best} == pytest.approx(best) and len(best) == 4
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{wd / 'mlflow.db'}")
    assert {a.path for a in c.list_artifacts(parent.info.run_id)} == {"spec.yaml", "results"}
    exported = {a.path for a in c.list_artifacts(parent.info.run_id, "results")}
    assert {"results/comparison.tex", "results/comparison.md", "results/sweep.tex", "results/tiny-run.bib",
            "results/sweep.png", "results/sweep.pdf"} <= exported, exported

    status = adapmtl("status", "tiny-run", "--workdir", str(wd), cwd=tmp_path)
    assert status.returncode == 0 and "finished 5" in status.stdout, status.stdout + status.stderr


@pytest.mark.integration
def test_torchtrainer_path_two_workers_resumes_a_killed_worker(tmp_path):
    """Multi-worker trials: Tune driver function -> TorchTrainer (DDP, 2 CPU workers) -> TuneReportCallback;
    the rank-0 worker is SIGKILLed once and Train's FailureConfig restarts the group from the checkpoint."""
    spec = write(tmp_path, tiny_spec("tiny-train", {"dense": {}, "snip": {}}, [0.5],
                                     resources={"workers_per_trial": 2, "cpus_per_worker": 0.9, "backend": "train",
                                                "max_failures": 2}))
    wd = tmp_path / "wd"
    proc = adapmtl("run", str(spec), "--workdir", str(wd), cwd=tmp_path, ADAPMTL_FAULT_KILL_AT_STEP="4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, kids = check_sweep(runs_of(wd, "tiny-train"), "tiny-train", n_children=2)
    resumed = [r for r in kids if "resumed_from_step" in r.data.tags]
    assert len(resumed) == 1 and resumed[0].data.tags["resumed_from_step"] == "3"
    assert all(r.data.params["train.iterations"] == "6" for r in kids)
    assert re.search(r"a worker died( after step 3)?; Ray Train restarted the worker group from the checkpoint of "
                     r"step 3", proc.stderr), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.integration
def test_killed_driver_then_resume_finishes_without_duplicates(tmp_path):
    """SIGKILL the driver alone during the Optuna search, then `adapmtl resume`: it first cleans up what the
    dead driver's embedded Ray left (agents still running, its temp dir), then finishes the sweep."""
    from orchestrator.leftovers import processes_using

    train = dict(TINY_TRAIN, iterations=40, val_every=10, checkpoint_every=10, log_every=10)
    spec = write(tmp_path, tiny_spec("tiny-resume", {"dense": {}, "adapmtl": {"search": "default", "samples": 2}},
                                     [0.5], train=train))
    wd = tmp_path / "wd"
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--workdir", str(wd)]
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if driver.poll() is not None:
                    pytest.fail("driver ended before it could be killed:\n" + (tmp_path / "driver.log").read_text())
                trial_runs = [r for r in runs_of(wd, "tiny-resume") if r.data.tags.get("method") == "adapmtl"]
                if any("val/objective" in r.data.metrics for r in trial_runs):
                    break
                time.sleep(2)
            else:
                pytest.fail("no trial reported in time")
            driver.kill()  # SIGKILL to the driver alone: its embedded Ray cannot clean up after it
            driver.wait()
            time.sleep(2)
            before = runs_of(wd, "tiny-resume")
            assert any(r.info.status == "RUNNING" for r in before)  # really interrupted
            temp_dir = next(line.rsplit("temp dir ", 1)[1].strip() for line in
                            (tmp_path / "driver.log").read_text().splitlines() if ", temp dir " in line)
            assert Path(temp_dir).is_dir()  # left behind ...
            proc = adapmtl("resume", "tiny-resume", "--workdir", str(wd), cwd=tmp_path)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)  # whatever of the first driver's session is left
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"cleaned up after a dead driver (pid {driver.pid})" in proc.stderr and temp_dir in proc.stderr
    assert not Path(temp_dir).exists() and not processes_using(Path(temp_dir))  # ... and cleaned by resume
    assert "continuing its Tune experiment" in proc.stderr  # Tuner.restore kept the search's state
    after = runs_of(wd, "tiny-resume")
    parent, kids = check_sweep_resumed(after)
    trials = [r for r in kids if r.data.tags["role"] == "trial" and r.info.status == "FINISHED"]
    assert len(trials) == 2, [(r.info.run_name, r.info.status) for r in kids]
    assert sum(r.data.tags.get("best") == "true" for r in trials) == 1
    # runs that existed before the kill were continued, not duplicated
    before_keys = {r.data.tags.get("run_key"): r.info.run_id for r in before if "run_key" in r.data.tags}
    after_keys = {r.data.tags["run_key"]: r.info.run_id for r in kids}
    for k, rid in before_keys.items():
        if k in after_keys:
            assert after_keys[k] == rid


def check_sweep_resumed(runs: list) -> tuple:
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(kids) == len(runs) - 1
    keys = Counter(r.data.tags["run_key"] for r in kids)
    assert max(keys.values()) == 1, keys
    assert not [r for r in kids if r.info.status == "RUNNING"]
    killed = [r for r in kids if r.info.status != "FINISHED"]
    assert all(r.data.tags.get("failure_reason") for r in killed)  # anything not finished says why
    return parents[0], kids


def test_nan_trial_is_recorded_failed_and_ends_normally(tmp_path):
    """A diverging trial: the MLflow run is FAILED with the reason, Tune gets the worst objective, no raise."""
    from orchestrator import tracking
    from orchestrator.trial import WORST, TrialContext, Unit, _run_engine, build_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_reachable(uri)
    exp = tracking.ensure_experiment(uri, "nan")
    parent = tracking.get_or_create_parent(uri, exp, "nan", {})
    spec = tiny_spec("nan", {"snip": {}}, [0.5])
    base = {"data": spec["dataset"], "model": {"arch": "resnet34", **spec["model"]},
            "train": dict(TINY_TRAIN, lr=1e12, log_every=1), "method": "snip", "method_params": {},
            "target_sparsity": 0.5, "seed": 0}
    unit = Unit(id="snip-g", role="trial", base=base, reference_id="ref")
    ctx = TrialContext(sweep="nan", tracking_uri=uri, experiment_id=exp, parent_run_id=parent,
                       runs_dir=str(tmp_path / "runs"), storage=str(tmp_path / "tune"), git_sha="x",
                       units={"snip-g": unit})
    cfg = build_config(unit, {})
    run_id, _ = tracking.claim_run(uri, exp, run_key=cfg.run_key(), run_name="n", tags={"role": "trial"},
                                   parent_run_id=parent)
    reported = []
    ref = {"val": {"segment_semantic": {"miou": 10.0, "pixel_acc": 10.0}}, "test": {}}
    job = dict(kwargs=cfg.model_dump(mode="json"), run_id=run_id, key=cfg.run_key(),
               workdir=str(tmp_path / "runs" / cfg.run_key()), reference=ref, dense_checkpoint=None,
               needs_objective=True, ctx=ctx)
    _run_engine(job, report=lambda m, **_: reported.append(m), rank=0)
    assert reported[-1]["trial_failed"] == 1 and reported[-1]["objective"] == -WORST
    run = tracking.client(uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith(tracking.NONFINITE_PREFIX)
    assert tracking.is_final(run)  # a re-run skips it instead of diverging again
    assert run.data.tags["mlflow.parentRunId"] == parent


@pytest.mark.integration
@pytest.mark.parametrize("algorithm,scheduler", [("grid", "none"), ("random", "asha")])
def test_grid_in_the_sweep_tuner_and_asha_in_its_own(tmp_path, algorithm, scheduler):
    """Grid search runs inside the sweep's one Tuner (every combination once); a group under ASHA gets a
    Tuner of its own after the references, and early-stopped trials are closed, not left RUNNING."""
    train = dict(TINY_TRAIN, iterations=8, val_every=2, log_every=2, checkpoint_every=4)
    space = ({"window": [2, 4], "lam": [0.5, 1.0]} if algorithm == "grid"
             else {"theta_init": {"type": "uniform", "low": -6.0, "high": -3.0}})
    spec = write(tmp_path, tiny_spec(f"tiny-{algorithm}", {"dense": {}, "snip": {},
                                                            "adapmtl": {"search": space, "samples": 3}},
                                     [0.5], train=train,
                                     search={"algorithm": algorithm, "scheduler": scheduler, "grace_period": 2,
                                             "reduction_factor": 2},
                                     ray={"num_cpus": 2}))
    wd = tmp_path / "wd"
    proc = adapmtl("run", str(spec), "--workdir", str(wd), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = runs_of(wd, f"tiny-{algorithm}")
    kids = [r for r in runs if r.data.tags.get("role") != "sweep"]
    assert not [r for r in kids if r.info.status == "RUNNING"]
    ad = [r for r in kids if r.data.tags.get("method") == "adapmtl"]
    if algorithm == "grid":
        assert sorted((r.data.params["method.window"], r.data.params["method.lam"]) for r in ad) == sorted(
            (str(w), str(lam)) for w in (2, 4) for lam in (0.5, 1.0))
        assert all(r.info.status == "FINISHED" for r in kids)
    else:
        assert len(ad) == 3
        stopped = [r for r in ad if r.info.status == "KILLED"]
        assert all("stopped early by the scheduler" in r.data.tags["failure_reason"] for r in stopped)
    assert sum(r.data.tags.get("best") == "true" for r in ad) == 1
    assert [r.data.tags.get("best") for r in kids if r.data.tags.get("method") == "snip"] == ["true"]
    own_tuner = wd / "sweeps" / f"tiny-{algorithm}" / "tune" / "adapmtl-synthetic_scenes-resnet34-sp0.5-seed0"
    assert own_tuner.is_dir() == (scheduler == "asha")


@pytest.mark.integration
def test_a_reference_that_died_is_retrained_by_resume_and_its_groups_run(tmp_path):
    """No retries: the reference's process is killed, so its groups cannot run in this sweep; `adapmtl
    resume` plans a new attempt that resumes the reference from its checkpoint and then runs the group."""
    spec = write(tmp_path, tiny_spec("tiny-refdied", {"dense": {}, "snip": {}}, [0.5],
                                     resources={"max_failures": 0}))
    wd = tmp_path / "wd"
    first = adapmtl("run", str(spec), "--workdir", str(wd), cwd=tmp_path, ADAPMTL_FAULT_KILL_AT_STEP="4")
    assert first.returncode == 1, first.stderr[-3000:]  # planned groups produced nothing: a failed sweep
    assert "did not finish (their groups did not run)" in first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("adapmtl: error: sweep tiny-refdied: 2 planned reference(s)/group(s) produced no "
                           "reported run: "), last
    assert "snip-synthetic_scenes-resnet34-sp0.5-seed0: its reference dense-synthetic_scenes-resnet34-seed0 " in last
    parent = next(r for r in runs_of(wd, "tiny-refdied") if r.data.tags.get("role") == "sweep")
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"] in last
    assert not [r for r in runs_of(wd, "tiny-refdied") if r.data.tags.get("method") == "snip"]

    again = adapmtl("resume", "tiny-refdied", "--workdir", str(wd), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    parent, kids = check_sweep_resumed(runs_of(wd, "tiny-refdied"))
    by_method = {r.data.tags["method"]: r for r in kids}
    assert set(by_method) == {"dense", "snip"} and len(kids) == 2
    assert all(r.info.status == "FINISHED" for r in kids)
    assert by_method["dense"].data.tags["resumed_from_step"] == "3"  # the same run, continued
