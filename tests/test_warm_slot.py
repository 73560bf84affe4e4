"""Early (waiting) group trials: ``orchestrator.trial.wait_for_reference`` against a real sqlite store.

A trial issued while its reference still trains waits for the reference's MLflow run and must start as
soon as it is FINISHED, and stop promptly when the reference cannot serve: a zero metric, or the searcher's
``reference_dropped/<id>`` tag on the parent run (it dropped the reference). A FAILED/KILLED run alone is
not final (``resume`` reopens it), except as a fallback after a grace period.
"""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator import tracking
from orchestrator.trial import ReferenceUnavailable, TrialContext, Unit, wait_for_reference


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('warm') / 'mlflow.db'}"
    tracking.check_reachable(uri)
    return uri, tracking.ensure_experiment(uri, "warm")


@pytest.fixture()
def store(mlflow_store, tmp_path, request):
    """A parent run and a reference key of this test's own in the module's store (creating a sqlite store
    costs seconds)."""
    uri, exp = mlflow_store
    parent = tracking.create_run(uri, exp, run_name="sweep", tags={"role": "sweep"})
    ctx = TrialContext(sweep="warm", tracking_uri=uri, experiment_id=exp, parent_run_id=parent,
                       runs_dir=str(tmp_path / "runs"), storage=str(tmp_path / "storage"), git_sha="x", units={})
    key = f"key-{request.node.name}"
    unit = Unit(id="snip-g", role=tracking.ROLE_TRIAL, base={}, reference_id="ref", reference_key=key)
    return ctx, unit


def _reference(ctx, unit, miou: float = 40.0) -> str:
    run_id = tracking.create_run(ctx.tracking_uri, ctx.experiment_id, run_name="ref",
                                 tags={"run_key": unit.reference_key, "role": "reference"})
    c = tracking.client(ctx.tracking_uri)
    c.log_metric(run_id, "val/segment_semantic/miou", miou)
    c.log_metric(run_id, "test/segment_semantic/miou", 41.0)
    return run_id


def _later(seconds: float, fn) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(seconds), fn()))
    t.start()
    return t


def test_waits_while_the_reference_trains_then_returns_its_finished_run(store):
    ctx, unit = store
    run_id = _reference(ctx, unit)
    t0 = time.monotonic()
    th = _later(0.8, lambda: tracking.client(ctx.tracking_uri).set_terminated(run_id, status="FINISHED"))
    run = wait_for_reference(ctx, unit, poll_s=0.05)
    th.join()
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert 0.7 <= time.monotonic() - t0 < 10


@pytest.mark.parametrize("status", ["FAILED", "KILLED"])
def test_a_failed_reference_stops_the_waiting_trial_when_the_searcher_drops_it(store, status):
    from orchestrator.feeds import ReferenceCheck

    ctx, unit = store
    run_id = _reference(ctx, unit)
    c = tracking.client(ctx.tracking_uri)
    c.set_tag(run_id, "failure_reason", "non-finite loss (total) within steps 1-25")
    check = ReferenceCheck(ctx.tracking_uri, ctx.experiment_id, {"ref": unit.reference_key},
                           parent_run_id=ctx.parent_run_id)
    th = _later(0.3, lambda: (c.set_terminated(run_id, status=status),
                              check.announce_dropped("ref", check.problem("ref", error=True))))
    t0 = time.monotonic()
    with pytest.raises(ReferenceUnavailable, match="non-finite loss"):
        wait_for_reference(ctx, unit, poll_s=0.05)
    th.join()
    assert time.monotonic() - t0 < 10


def test_a_run_left_failed_by_an_earlier_attempt_is_waited_for_until_reopened(store):
    """`resume`: the reference's run is FAILED from the attempt that died until its retrained trial reopens
    it; a waiting trial must not give up on it then."""
    ctx, unit = store
    run_id = _reference(ctx, unit)
    c = tracking.client(ctx.tracking_uri)
    c.set_terminated(run_id, status="FAILED")
    th = _later(0.5, lambda: (c.update_run(run_id, status="RUNNING"), time.sleep(0.5),
                              c.set_terminated(run_id, status="FINISHED")))
    run = wait_for_reference(ctx, unit, poll_s=0.05)
    th.join()
    assert run.info.run_id == run_id and run.info.status == "FINISHED"


def test_a_failed_run_nobody_announces_ends_the_wait_after_the_grace(store, monkeypatch):
    import orchestrator.trial as trial

    ctx, unit = store
    run_id = _reference(ctx, unit)
    c = tracking.client(ctx.tracking_uri)
    c.set_tag(run_id, "failure_reason", "non-finite loss (total) within steps 1-25")
    c.set_terminated(run_id, status="KILLED")
    monkeypatch.setattr(trial, "REFERENCE_GRACE_S", 0.5)
    t0 = time.monotonic()
    with pytest.raises(ReferenceUnavailable, match="non-finite loss"):
        wait_for_reference(ctx, unit, poll_s=0.05)
    assert 0.5 <= time.monotonic() - t0 < 10


def test_a_zero_metric_reference_cannot_serve(store):
    ctx, unit = store
    run_id = _reference(ctx, unit, miou=0.0)
    tracking.client(ctx.tracking_uri).set_terminated(run_id, status="FINISHED")
    with pytest.raises(ReferenceUnavailable, match="segment_semantic/miou = 0"):
        wait_for_reference(ctx, unit, poll_s=0.05)


def test_a_reference_dropped_without_a_run_is_learned_from_the_parent_tag(store):
    from orchestrator.feeds import ReferenceCheck

    ctx, unit = store
    check = ReferenceCheck(ctx.tracking_uri, ctx.experiment_id, {"ref": unit.reference_key},
                           parent_run_id=ctx.parent_run_id)
    th = _later(0.3, lambda: check.announce_dropped("ref", "its trial errored (no reason was recorded in MLflow)"))
    t0 = time.monotonic()
    with pytest.raises(ReferenceUnavailable, match="its trial errored"):
        wait_for_reference(ctx, unit, poll_s=0.05)
    th.join()
    assert time.monotonic() - t0 < 10
