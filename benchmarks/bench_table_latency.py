"""Benchmark: ``adapmtl table`` latency on a 1,000-run store, as a ratio against the bare collection.

Why: a paper is written by re-running ``adapmtl table`` many times; the collection itself takes tens of ms
once cached, so everything else a call costs (interpreter start, imports, the method registry, building and
rendering the table) is overhead a user waits for. Target (issue 14, item 12): ≤ 2 s cached.

Each measurement is a fresh interpreter, as a user's shell call is, run interleaved ``C T C T …`` so load
drifts hit both sides alike:

* **C** bare collection: ``python -c "from results.collect import collect; collect(SWEEP, tracking_uri=U)"``
  (cached Parquet; what the table cannot avoid);
* **T** ``python -m orchestrator.cli table SWEEP --tracking-uri U`` (cached; Markdown to stdout);
* **first** the same table call with empty caches (results Parquet and method metadata), once per round;
* with ``--baseline DIR`` (a source tree of an older commit, e.g. ``git archive c7a6fd2 | tar -x -C DIR``),
  **T** and **first** again with that code, side by side.

Reproduce::

    OMP_NUM_THREADS=1 MLFLOW_DISABLE_TELEMETRY=true .venv/bin/python benchmarks/bench_table_latency.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_results_collect import SWEEP, write_store  # noqa: E402


def _env(code: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(code), ADAPMTL_CACHE_DIR=str(cache), MLFLOW_DISABLE_TELEMETRY="true",
               RAY_USAGE_STATS_ENABLED="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return secs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--store", type=Path, default=Path("/tmp/adapmtl_bench_results"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", type=Path, default=None, help="source tree of the code to compare against")
    args = ap.parse_args(argv)

    store_dir = args.store / f"runs{args.runs}"
    uri = f"sqlite:///{(store_dir / 'mlflow.db').resolve().as_posix()}"
    if not (store_dir / "READY").exists():
        shutil.rmtree(store_dir, ignore_errors=True)
        store_dir.mkdir(parents=True)
        print(f"writing {args.runs} runs to {uri} ...", flush=True)
        (store_dir / "READY").write_text(f"{write_store(uri, args.runs):.1f}\n")

    py = sys.executable
    collect_cmd = [py, "-c", f"from results.collect import collect; collect({SWEEP!r}, tracking_uri={uri!r})"]
    table_cmd = [py, "-m", "orchestrator.cli", "table", SWEEP, "--tracking-uri", uri]
    codes = {"this": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        caches = {name: Path(tmp) / name for name in codes}
        for name, code in codes.items():  # warm each cache once (not timed)
            _timed(table_cmd, _env(code, caches[name]))
        for _ in range(args.rounds):
            times.setdefault("collect cached", []).append(_timed(collect_cmd, _env(REPO, caches["this"])))
            for name, code in codes.items():
                times.setdefault(f"table cached ({name})", []).append(_timed(table_cmd, _env(code, caches[name])))
            for name, code in codes.items():
                cold = Path(tmp) / f"cold-{name}"
                shutil.rmtree(cold, ignore_errors=True)
                times.setdefault(f"table first call ({name})", []).append(_timed(table_cmd, _env(code, cold)))

    base = statistics.median(times["collect cached"])
    load = os.getloadavg()[0]
    print(f"\n{args.runs} runs, {args.rounds} rounds interleaved, medians; load average {load:.1f}")
    print(f"{'call (fresh interpreter)':<34}{'median s':>9}{'min s':>8}{'× collect':>11}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<34}{med:>9.2f}{min(values):>8.2f}{med / base:>10.1f}x")
    cached = statistics.median(times["table cached (this)"])
    print(f"\ntarget: table cached ≤ 2 s → {cached:.2f} s ({'met' if cached <= 2 else 'missed'})")
    print("reproduce: OMP_NUM_THREADS=1 MLFLOW_DISABLE_TELEMETRY=true .venv/bin/python "
          f"benchmarks/bench_table_latency.py --runs {args.runs}"
          + (" --baseline DIR" if args.baseline else ""))
    return 0 if cached <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
