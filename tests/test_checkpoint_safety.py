"""Checkpoints and dense references are read without running code (``weights_only``); a refused file is one
line naming it. Each planted file's pickle would create a marker file if it were executed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from trainers import checkpoint as ckpt


class _Planted:
    """Unpickling this with a full unpickler calls ``open(marker, "w")``: the marker appears."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path, marker, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 3, "payload": _Planted(marker), **extra}, path)
    return path


def _assert_one_line_refusal(exc: BaseException, path) -> None:
    text = str(exc)
    assert "\n" not in text, text
    assert str(path) in text and "refusing to load" in text and "io.open" in text, text


def test_planted_checkpoint_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "MARKER"
    path = _plant(tmp_path / "checkpoint.pt", marker)
    with pytest.raises(ckpt.UnsafeCheckpointError) as info:
        ckpt.load(path)
    assert not marker.exists()
    _assert_one_line_refusal(info.value, path)


def test_engine_resume_refuses_a_planted_checkpoint(tmp_path, make_config):
    """The `adapmtl train` / `resume` path: the engine finds checkpoint.pt in the run dir and loads it."""
    from trainers.engine import train

    cfg = make_config(train={"iterations": 4})
    marker = tmp_path / "MARKER"
    path = _plant(tmp_path / "run" / "checkpoint.pt", marker, run_key=cfg.run_key())
    with pytest.raises(ckpt.UnsafeCheckpointError) as info:
        train(cfg, workdir=tmp_path / "run")
    assert not marker.exists()
    _assert_one_line_refusal(info.value, path)


def test_lth_refuses_a_planted_dense_reference(tmp_path, make_config):
    from trainers.engine import train

    cfg = make_config(method="lth", target_sparsity=0.5, train={"iterations": 4})
    marker = tmp_path / "MARKER"
    dense = _plant(tmp_path / "dense" / "final.pt", marker, config={"method": "dense"}, model={})
    with pytest.raises(ckpt.UnsafeCheckpointError) as info:
        train(cfg, workdir=tmp_path / "run", dense_checkpoint=dense)
    assert not marker.exists()
    _assert_one_line_refusal(info.value, dense)


def test_trial_records_the_refusal_on_its_mlflow_run(tmp_path):
    """Sweep path (real sqlite MLflow): the run is FAILED with the one-line reason, not left RUNNING."""
    from test_orchestrator import TINY_TRAIN, tiny_spec

    from orchestrator import tracking
    from orchestrator.trial import TrialContext, Unit, _run_engine, build_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_reachable(uri)
    exp = tracking.ensure_experiment(uri, "planted")
    parent = tracking.get_or_create_parent(uri, exp, "planted", {})
    spec = tiny_spec("planted", {"dense": {}}, [])
    base = {"data": spec["dataset"], "model": {"arch": "resnet34", **spec["model"]}, "train": dict(TINY_TRAIN),
            "method": "dense", "method_params": {}, "target_sparsity": None, "seed": 0}
    unit = Unit(id="dense-ref", role="reference", base=base)
    ctx = TrialContext(sweep="planted", tracking_uri=uri, experiment_id=exp, parent_run_id=parent,
                       runs_dir=str(tmp_path / "runs"), storage=str(tmp_path / "tune"), git_sha="x",
                       units={"dense-ref": unit})
    cfg = build_config(unit, {})
    run_id, _ = tracking.claim_run(uri, exp, run_key=cfg.run_key(), run_name="r", tags={"role": "reference"},
                                   parent_run_id=parent)
    marker = tmp_path / "MARKER"
    workdir = tmp_path / "runs" / cfg.run_key()
    planted = _plant(workdir / "checkpoint.pt", marker, run_key=cfg.run_key())
    job = dict(kwargs=cfg.model_dump(mode="json"), run_id=run_id, key=cfg.run_key(), workdir=str(workdir),
               reference=None, dense_checkpoint=None, needs_objective=False, ctx=ctx)
    reported = []
    _run_engine(job, report=lambda m, **_: reported.append(m), rank=0)
    assert not marker.exists()
    assert reported[-1]["trial_failed"] == 1
    run = tracking.client(uri).get_run(run_id)
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert str(planted) in reason and "refusing to load" in reason and "\n" not in reason, reason


def test_rng_state_is_plain_data_and_round_trips(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = ckpt.rng_state()
    ckpt.save_atomic({"rng": state}, tmp_path / "c.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "c.pt") == []
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(ckpt.load(tmp_path / "c.pt")["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_checkpoint_of_the_old_format_still_resumes(tmp_path):
    """Checkpoints written before the RNG state was plain data hold NumPy's state as an ndarray: exactly those
    NumPy types are allowed, so interrupted sweeps resume after the upgrade."""
    np.random.seed(5)
    legacy = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    torch.save({"rng": legacy, "step": 2}, tmp_path / "old.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "old.pt")  # really the old format
    expected = np.random.rand(2)
    ckpt.set_rng_state(ckpt.load(tmp_path / "old.pt")["rng"])
    assert np.array_equal(np.random.rand(2), expected)
