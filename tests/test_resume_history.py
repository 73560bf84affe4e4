"""A resumed run's MLflow history has every step once (real sqlite MLflow): the steps replayed between the
last checkpoint and the point where the previous attempt died are not logged a second time."""

from __future__ import annotations

from collections import Counter

import pytest


def test_resumed_run_does_not_repeat_the_replayed_steps(tmp_path, make_config):
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking
    from trainers.engine import train
    from trainers.reporting import MLflowReporter

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_reachable(uri)
    exp = tracking.ensure_experiment(uri, "history")
    run_id = tracking.create_run(uri, exp, run_name="r", tags={"role": "reference"})
    cfg = make_config(train={"iterations": 8, "log_every": 2, "val_every": 2, "checkpoint_every": 4})
    workdir = tmp_path / "run"

    def die_at_6(step: int, flat: dict) -> None:
        if step == 6:  # after step 6 was logged, before any checkpoint past step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, MLflowReporter(uri, run_id), workdir=workdir, on_validation=die_at_6)
    c = MlflowClient(uri)
    assert c.get_run(run_id).info.status == "KILLED"
    c.update_run(run_id, status="RUNNING")  # reopened, as claim_run does on resume
    result = train(cfg, MLflowReporter(uri, run_id), workdir=workdir)
    assert result.completed

    run = c.get_run(run_id)
    for key in ("train/loss/segment_semantic", "val/segment_semantic/miou", "sparsity/overall"):
        steps = [m.step for m in c.get_metric_history(run_id, key)]
        assert max(Counter(steps).values()) == 1, (key, sorted(steps))
        assert sorted(steps) == [2, 4, 6, 8], (key, sorted(steps))
    assert "test/segment_semantic/miou" in run.data.metrics  # logged at the final step, once
    assert [m.step for m in c.get_metric_history(run_id, "test/segment_semantic/miou")] == [8]
