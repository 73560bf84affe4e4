"""A compact live status line for a sweep phase: done/running/failed and the best objective per group.

Implemented as a Tune ``Callback`` in the driver (Tune's own tables are silenced with ``verbose=0``). It keeps
only plain data so it survives the pickling that ``Tuner.restore`` applies to callbacks.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback


def _fmt(v: float) -> str:
    return f"{v:+.2f}" if abs(v) < 1e8 else "failed"


class ProgressLine(Callback):
    def __init__(self, label: str, total: int, mode: str = "max", every_s: float = 10.0) -> None:
        self.label = label
        self.total = total
        self.mode = mode
        self.every_s = every_s
        self.best: dict[str, float] = {}
        self._last_print = 0.0
        self._last_line = ""

    # Tune hooks --------------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials, force=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        obj = result.get("objective")
        unit = (trial.config or {}).get("unit", "?")
        if isinstance(obj, int | float) and not result.get("trial_failed"):
            cur = self.best.get(unit)
            better = cur is None or (obj > cur if self.mode == "max" else obj < cur)
            if better:
                self.best[unit] = float(obj)
        self._emit(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials, force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._emit(trials, force=True, final=True)

    # rendering -----------------------------------------------------------------------------------------
    def line(self, trials: list) -> str:
        done = running = failed = 0
        for t in trials:
            last = t.last_result or {}
            if t.status == "RUNNING":
                running += 1
            elif t.status == "ERROR" or (t.status == "TERMINATED" and last.get("trial_failed")):
                failed += 1
            elif t.status == "TERMINATED":
                done += 1
        best = ", ".join(f"{u} {_fmt(v)}" for u, v in sorted(self.best.items()))
        total = max(self.total, len(trials))
        text = f"[{self.label}] done {done}/{total} · running {running} · failed {failed}"
        return f"{text} · best objective: {best}" if best else text

    def _emit(self, trials: list, force: bool = False, final: bool = False) -> None:
        now = time.monotonic()
        line = self.line(trials)
        if not final and line == self._last_line and now - self._last_print < self.every_s:
            return
        if not force and now - self._last_print < 1.0:
            return
        self._last_print, self._last_line = now, line
        stream = sys.stderr
        if stream.isatty():
            stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            stream.write(line + "\n")
        stream.flush()
