"""The sweep's progress line: counts, ETA, one line per change in a log, never wider than the terminal."""

from __future__ import annotations

import io
from types import SimpleNamespace

from orchestrator.progress import ProgressLine


def _trials(done: int, running: int, failed: int) -> list:
    return ([SimpleNamespace(status="TERMINATED", last_result={}) for _ in range(done)]
            + [SimpleNamespace(status="RUNNING", last_result={}) for _ in range(running)]
            + [SimpleNamespace(status="ERROR", last_result={}) for _ in range(failed)])


def test_line_counts_and_eta():
    p = ProgressLine("sweep-abc", total=24)
    assert p.line(_trials(0, 2, 0), now=100.0) == "[sweep-abc] 0/24 trials · 2 running · 0 failed · 0 s"
    line = p.line(_trials(6, 2, 0), now=160.0)  # 6 of 24 in 60 s → 180 s to go
    assert line == "[sweep-abc] 6/24 trials · 2 running · 0 failed · 60 s · ETA ~3 min"


def test_log_gets_one_line_per_change(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    p = ProgressLine("s", total=3)
    for trials in (_trials(0, 1, 0), _trials(0, 1, 0), _trials(1, 1, 0), _trials(1, 1, 0), _trials(2, 0, 1)):
        p.on_trial_result(0, trials, trials[0], {})
    p.on_experiment_end(_trials(2, 0, 1))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4  # three distinct states + the final line
    assert lines[-1].startswith("[s] 3/3 trials · 0 running · 1 failed")


def test_terminal_line_is_cut_to_the_width(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    buf = Tty()
    monkeypatch.setattr("sys.stderr", buf)
    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=None: SimpleNamespace(columns=40, lines=24))
    p = ProgressLine("a-very-long-sweep-name-that-would-overflow", total=500)
    p.on_trial_start(0, _trials(10, 2, 0), None)
    written = buf.getvalue()
    assert written.startswith("\r\033[K") and "\n" not in written
    assert len(written[len("\r\033[K"):]) <= 39
