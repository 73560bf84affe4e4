"""Trial failures are one line each (issue 14, item 7); the integration tests in test_orchestrator.py check
the same lines on real killed workers."""

from __future__ import annotations

from types import SimpleNamespace

import cloudpickle
import pytest

from orchestrator.failures import FailureLines


def _trial(tmp_path, exc=None, *, step=3, failures=1, max_failures=2, tid="t1"):
    pickled = None
    if exc is not None:
        pickled = tmp_path / f"{tid}.pkl"
        pickled.write_bytes(cloudpickle.dumps(exc))
    return SimpleNamespace(trial_id=tid, config={"unit": "snip-resnet34-sp0.9-seed0"}, last_result={"step": step},
                           num_failures=failures, max_failures=max_failures, pickled_error_file=pickled,
                           error_file=str(tmp_path / "error.txt"))


def test_tune_retry_of_a_dead_worker_is_one_line_and_its_resume_is_not_repeated(tmp_path, capsys):
    from ray.exceptions import ActorDiedError

    cb = FailureLines()
    trial = _trial(tmp_path, ActorDiedError())
    cb.on_trial_result(0, [], trial, {"step": 3})
    cb.on_trial_recover(0, [], trial)
    cb.on_trial_result(0, [], trial, {"step": 6, "resumed_from_step": 3})  # the retry resumed: already said
    err = capsys.readouterr().err
    assert err == ("adapmtl: snip-resnet34-sp0.9-seed0: worker died after step 3, retrying from checkpoint "
                   "(retry 1 of 2)\n")


def test_python_exception_retry_and_final_failure_name_the_error(tmp_path, capsys):
    cb = FailureLines()
    cb.on_trial_recover(0, [], _trial(tmp_path, ValueError("bad lr\nmore detail")))
    cb.on_trial_error(0, [], _trial(tmp_path, ValueError("bad lr"), step=None, tid="t2"))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("ValueError: bad lr after step 3, retrying from checkpoint (retry 1 of 2)")
    assert lines[1] == (f"adapmtl: snip-resnet34-sp0.9-seed0: trial failed: ValueError: "
                        f"bad lr; traceback in {tmp_path / 'error.txt'}")


@pytest.mark.parametrize("seen_before,restarted,expected", [
    (True, 1, "a worker died after step 3; Ray Train restarted the worker group from the checkpoint of step 3"),
    (False, 1, "a worker died; Ray Train restarted the worker group from the checkpoint of step 3"),
    (False, None, "resumed from the checkpoint of step 3"),
])
def test_restart_inside_ray_train_is_told_from_the_first_result_after_it(tmp_path, capsys, seen_before, restarted,
                                                                       expected):
    cb = FailureLines()
    trial = _trial(tmp_path)
    if seen_before:
        cb.on_trial_result(0, [], trial, {"step": 3})
    result = {"step": 6, "resumed_from_step": 3, **({"restarted_by_train": restarted} if restarted else {})}
    cb.on_trial_result(0, [], trial, result)
    cb.on_trial_result(0, [], trial, {**result, "step": 9})  # later reports of the same execution: silent
    assert capsys.readouterr().err == f"adapmtl: snip-resnet34-sp0.9-seed0: {expected}\n"
