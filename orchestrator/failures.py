"""One line per trial failure instead of Ray Tune's tracebacks.

Why: a worker killed mid-trial (OOM, a lost node, the tests' fault injection) is retried from the engine's
checkpoint and the sweep goes on, yet Tune printed the whole ``ActorDiedError`` traceback (~30 lines) for
it, which reads as if the sweep had crashed. Tune's documented switch ``TUNE_PRINT_ALL_TRIAL_ERRORS=0``
(set by the sweep unless the user set it) stops that printing — the traceback is still written to the
trial's ``error.txt`` — and :class:`FailureLines`, a Tune callback in the driver, says what happened in one
line instead:

* a retry Tune schedules (direct path): ``<unit>: worker died after step N, retrying from checkpoint
  (retry k of M)`` (or ``<unit>: ValueError: ... after step N, retrying ...`` for a Python exception);
* a retry inside Ray Train (multi-worker path, invisible to Tune): the first report after the restart
  carries ``resumed_from_step``; ``<unit>: a worker died after step N; Ray Train restarted the worker group
  from the checkpoint of step S``;
* a trial that failed for good: ``<unit>: trial failed after step N: <first line>; traceback in <file>``
  (``after step N`` is left out when no report of the trial had reached the driver).

Only plain data is kept, so the callback survives the pickling ``Tuner.restore`` applies to callbacks.
"""

from __future__ import annotations

import sys
from typing import Any

from ray.tune import Callback

#: Tune's documented switch for printing every trial error with its traceback (we print one line instead)
PRINT_ERRORS_ENV = "TUNE_PRINT_ALL_TRIAL_ERRORS"
#: key of the Tune result in which a resumed engine says which checkpoint step it continued from
RESUMED_KEY = "resumed_from_step"
#: set in that result when Ray Train restarted the worker group (it handed the engine a checkpoint)
RESTARTED_KEY = "restarted_by_train"


def _say(msg: str) -> None:
    stream = sys.stderr
    prefix = "\r\033[K" if stream.isatty() else ""  # clear an in-place progress line first
    stream.write(f"{prefix}adapmtl: {msg}\n")
    stream.flush()


def _unit(trial: Any) -> str:
    return str((trial.config or {}).get("unit", trial.trial_id))


def _after(step: Any) -> str:
    """`` after step N`` for the last step the driver saw reported ("" when it saw none: the worker may
    still have trained, its report had not reached the driver)."""
    return f" after step {int(step)}" if isinstance(step, int | float) else ""


def describe_error(trial: Any) -> tuple[bool, str]:
    """(worker died?, one-line description) of the trial's last error, from the error Tune pickled."""
    exc = None
    path = getattr(trial, "pickled_error_file", None)
    if path:
        try:
            import cloudpickle

            with open(path, "rb") as fh:
                exc = cloudpickle.load(fh)
        except Exception:  # unreadable: describe it generically
            exc = None
    if exc is None:
        return True, "worker died"
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exc, RayActorError):
        return True, "worker died"
    cause = exc.cause if isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None else exc
    text = str(cause).strip().splitlines()
    return False, f"{type(cause).__name__}: {text[0][:200]}" if text else type(cause).__name__


class FailureLines(Callback):
    def __init__(self) -> None:
        self.last_step: dict[str, Any] = {}  # trial id -> step of its last report
        self.resumed: dict[str, Any] = {}  # trial id -> last resumed_from_step seen
        self.retry_announced: set[str] = set()  # Tune retries already announced (their resume is not news)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        tid = trial.trial_id
        resumed = result.get(RESUMED_KEY)
        if resumed is not None and resumed != self.resumed.get(tid):
            self.resumed[tid] = resumed
            if tid in self.retry_announced:
                self.retry_announced.discard(tid)
            elif result.get(RESTARTED_KEY) or tid in self.last_step:
                _say(f"{_unit(trial)}: a worker died{_after(self.last_step.get(tid))}; Ray Train restarted the "
                     f"worker group from the checkpoint of step {resumed}")
            else:  # e.g. a sweep resumed after its driver stopped
                _say(f"{_unit(trial)}: resumed from the checkpoint of step {resumed}")
        if "step" in result:
            self.last_step[tid] = result["step"]

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        died, what = describe_error(trial)
        step = (trial.last_result or {}).get("step", self.last_step.get(trial.trial_id))
        retry = f"retry {trial.num_failures} of {trial.max_failures}" if trial.max_failures > 0 else "retrying"
        self.retry_announced.add(trial.trial_id)
        _say(f"{_unit(trial)}: {'worker died' if died else what}{_after(step)}, retrying from checkpoint "
             f"({retry})")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _, what = describe_error(trial)
        step = (trial.last_result or {}).get("step", self.last_step.get(trial.trial_id))
        where = f"; traceback in {trial.error_file}" if getattr(trial, "error_file", None) else ""
        _say(f"{_unit(trial)}: trial failed{_after(step)}: {what}{where}")
