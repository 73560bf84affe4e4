"""The training loop: reporting schema, resume on the same trajectory, NaN handling, MLflow tracking."""

from __future__ import annotations

import math

import pytest
import torch

from trainers.engine import NonFiniteLossError, build_run, evaluate, train
from trainers.loader import eval_loader
from trainers.reporting import MemoryReporter

TASKS = ["segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"]


def test_dense_run_reports_the_schema(tmp_path, make_config):
    rep = MemoryReporter()
    result = train(make_config(), rep, workdir=tmp_path)
    assert result.completed and result.steps == 12
    assert rep.params["train.lr"] == 1e-3 and rep.params["method"] == "dense"
    for t in TASKS:
        assert [s for s, _ in rep.metrics[f"train/loss/{t}"]] == [3, 6, 9, 12]
        assert rep.last(f"train/weight/{t}") == 1.0
    assert {"sparsity/backbone", "sparsity/overall", "val/segment_semantic/miou", "val/normal/angle_mean",
            "test/depth_zbuffer/delta_1", "test/keypoints2d/abs_err", "final/sparsity/overall",
            "final/params_total", "final/params_nonzero", "final/flops_dense", "final/flops_sparse"} <= set(rep.metrics)
    assert rep.last("final/sparsity/overall") == 0.0
    assert rep.last("final/flops_sparse") == rep.last("final/flops_dense") > 0
    assert rep.status == "FINISHED"
    assert (tmp_path / "final.pt").exists() and (tmp_path / "history.csv").exists()


def test_reference_gives_delta_t(tmp_path, make_config):
    first = train(make_config(), None, workdir=tmp_path / "ref")
    rep = MemoryReporter()
    train(make_config(), rep, workdir=tmp_path / "again", reference={"val": first.val, "test": first.test})
    # the same config and seed reproduce the reference exactly: ΔT = 0 on every task
    assert rep.last("test/delta_t") == pytest.approx(0.0, abs=1e-6)
    assert rep.last("val/delta_t/normal") == pytest.approx(0.0, abs=1e-6)


def test_resume_reproduces_an_uninterrupted_run(tmp_path, make_config):
    cfg = make_config()
    full = tmp_path / "full"
    train(cfg, None, workdir=full)
    parts = tmp_path / "parts"
    partial = train(cfg, None, workdir=parts, stop_at=4)
    assert not partial.completed and (parts / "checkpoint.pt").exists()
    train(cfg, None, workdir=parts, resume=True)
    a = torch.load(full / "final.pt", weights_only=True)["model"]
    b = torch.load(parts / "final.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_nan_loss_stops_the_run_with_a_clear_error(tmp_path, make_config, monkeypatch):
    from trainers.dense import Dense

    monkeypatch.setattr(Dense, "task_weights", lambda self, step, losses: {t: float("nan") for t in losses})
    rep = MemoryReporter()
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train(make_config(), rep, workdir=tmp_path)
    assert rep.status == "FAILED" and "non-finite" in rep.reason


def test_checkpoint_of_another_run_is_refused(tmp_path, make_config):
    train(make_config(), None, workdir=tmp_path, stop_at=4)
    with pytest.raises(RuntimeError, match="belongs to another run"):
        train(make_config(seed=1), None, workdir=tmp_path)


def test_dense_training_learns_every_task(tmp_path, make_config):
    """A short dense run lowers every task's loss and beats its own initialization on every metric."""
    cfg = make_config(train={"iterations": 80, "val_every": 80, "log_every": 10, "checkpoint_every": 80,
                             "lr_decay_every": 1000},
                      data={"options": {"n_train": 128, "n_val": 32, "n_test": 32}})
    run = build_run(cfg, torch.device("cpu"))
    init = evaluate(run.model, eval_loader(run.test_set, 16), run.tasks, torch.device("cpu"))
    rep = MemoryReporter()
    result = train(cfg, rep, workdir=tmp_path)
    for t in TASKS:
        series = [v for _, v in rep.metrics[f"train/loss/{t}"]]
        assert series[-1] < series[0], (t, series)
        for metric, direction in run.tasks[t].metric_directions.items():
            before, after = init[t][metric], result.test[t][metric]
            assert math.isfinite(after)
            better = after > before if direction == "higher" else after < before
            assert better or after == before == 100.0, (t, metric, before, after)
