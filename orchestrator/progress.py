"""A one-line live status of a sweep: trials done/running/failed, elapsed time and a rough ETA.

Implemented as a Tune ``Callback`` in the driver (Tune's own tables are silenced with ``verbose=0``). On a
terminal the line is rewritten in place and never wider than the terminal; when stderr is a file or a pipe
(CI logs, ``tee``), one line is written per change of the counts, never a repeat. The per-group results are
the final table's job, not the progress line's. It keeps only plain data so it survives the pickling that
``Tuner.restore`` applies to callbacks.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

from ray.tune import Callback


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


class ProgressLine(Callback):
    def __init__(self, label: str, total: int, mode: str = "max", every_s: float = 10.0) -> None:
        self.label = label
        self.total = total
        self.mode = mode
        self.every_s = every_s
        self._t0: float | None = None
        self._last_print = 0.0
        self._last_counts: tuple[int, int, int] | None = None

    # Tune hooks --------------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._emit(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._emit(trials, final=True)

    # rendering -----------------------------------------------------------------------------------------
    @staticmethod
    def counts(trials: list) -> tuple[int, int, int]:
        done = running = failed = 0
        for t in trials:
            last = t.last_result or {}
            if t.status == "RUNNING":
                running += 1
            elif t.status == "ERROR" or (t.status == "TERMINATED" and last.get("trial_failed")):
                failed += 1
            elif t.status == "TERMINATED":
                done += 1
        return done, running, failed

    def line(self, trials: list, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if self._t0 is None:
            self._t0 = now
        done, running, failed = self.counts(trials)
        total = max(self.total, len(trials))
        elapsed = now - self._t0
        text = f"[{self.label}] {done + failed}/{total} trials · {running} running · {failed} failed · " \
               f"{_duration(elapsed)}"
        finished = done + failed
        if 0 < finished < total:
            text += f" · ETA ~{_duration(elapsed / finished * (total - finished))}"
        return text

    def _emit(self, trials: list, final: bool = False) -> None:
        now = time.monotonic()
        stream = sys.stderr
        counts = self.counts(trials)
        tty = stream.isatty()
        changed = counts != self._last_counts
        if not final and not changed and (not tty or now - self._last_print < self.every_s):
            return  # a file gets a line per change only; a terminal also refreshes the clock now and then
        self._last_print, self._last_counts = now, counts
        line = self.line(trials, now)
        if tty:
            width = shutil.get_terminal_size((100, 24)).columns - 1
            stream.write("\r\033[K" + line[:width] + ("\n" if final else ""))
        else:
            stream.write(line + "\n")
        stream.flush()
