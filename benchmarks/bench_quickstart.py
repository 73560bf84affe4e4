"""Question 5 of the performance issue: wall time of ``adapmtl quickstart`` end to end on this machine.

Runs the real command (``.venv/bin/adapmtl quickstart --workdir FRESH``) in a fresh work directory with a
fresh dataset cache (``ADAPMTL_CACHE``; a first-time user renders the synthetic scenes too — ``--cache DIR``
reuses one), no ``RAY_ADDRESS``/``MLFLOW_TRACKING_URI`` inherited, and times it from process start to exit.
Target: ≤ 10 minutes on the 2-core machine.

The breakdown comes from the sweep's own MLflow store: the time before the first trial starts (imports,
validation, dataset rendering, embedded Ray start), phase 1 (dense references) and phase 2 (the pruning
groups) as spans of their runs' start/end times, the sum of trial durations per method, and the time after
the last trial ends (results tables, plot, Ray shutdown). That is what a miss is explained with.

    .venv/bin/python benchmarks/bench_quickstart.py [--cache DIR] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_S = 600.0


def breakdown(workdir: Path, t_start: float, t_end: float) -> list[tuple[str, float]]:
    """Phase spans and per-method trial seconds from the quickstart's MLflow store (epoch seconds in/out)."""
    from mlflow.tracking import MlflowClient

    db = workdir / "mlflow.db"
    if not db.exists():
        found = list(workdir.rglob("mlflow.db"))
        if not found:
            return [("(no mlflow.db found under the work dir)", float("nan"))]
        db = found[0]
    client = MlflowClient(f"sqlite:///{db}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id], max_results=5000)]
    kids = [r for r in runs if r.data.tags.get("role") in ("reference", "trial") and r.info.end_time]
    if not kids:
        return [("(no finished trial runs)", float("nan"))]
    refs = [r for r in kids if r.data.tags["role"] == "reference"]
    trials = [r for r in kids if r.data.tags["role"] == "trial"]
    first = min(r.info.start_time for r in kids) / 1000.0
    last = max(r.info.end_time for r in kids) / 1000.0
    rows: list[tuple[str, float]] = [("before the first trial (imports, checks, data, Ray start)", first - t_start)]
    if refs:
        rows.append((f"phase 1: {len(refs)} dense reference(s), span",
                     (max(r.info.end_time for r in refs) - min(r.info.start_time for r in refs)) / 1000.0))
    if trials:
        rows.append((f"phase 2: {len(trials)} trial(s), span",
                     (max(r.info.end_time for r in trials) - min(r.info.start_time for r in trials)) / 1000.0))
    if refs and trials:
        rows.append(("gap between phases (Tuner start-up)",
                     min(r.info.start_time for r in trials) / 1000.0 - max(r.info.end_time for r in refs) / 1000.0))
    per_method: dict[str, list[float]] = collections.defaultdict(list)
    for r in kids:
        per_method[r.data.tags.get("method", "?")].append((r.info.end_time - r.info.start_time) / 1000.0)
    for m, ds in sorted(per_method.items(), key=lambda kv: -sum(kv[1])):
        rows.append((f"  trials of {m}: {len(ds)}, summed duration", sum(ds)))
    rows.append(("after the last trial (tables, plot, shutdown)", t_end - last))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help="reuse this dataset cache (default: a fresh one)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (printed)")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    exe = ROOT / ".venv" / "bin" / "adapmtl"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "orchestrator.cli"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-quickstart-"))
    workdir = tmp / "work"
    workdir.mkdir()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0",
               ADAPMTL_CACHE=args.cache or str(tmp / "cache"), PYTHONPATH=str(ROOT))
    for k in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(k, None)
    load0 = os.getloadavg()
    t_start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, "quickstart", "--workdir", str(workdir)], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    t_end = time.time()
    load1 = os.getloadavg()
    (tmp / "quickstart.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    print(f"adapmtl quickstart: exit {proc.returncode}, wall {wall:.0f} s ({wall / 60:.1f} min); "
          f"load average {load0[0]:.2f} → {load1[0]:.2f} (1 min), {load1[1]:.2f} (5 min)")
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
    print(f"{'':60s} {'seconds':>8s}")
    for what, sec in breakdown(workdir, t_start, t_end):
        print(f"{what:60s} {sec:8.1f}")
    met = proc.returncode == 0 and wall <= TARGET_S
    print(f"\ntarget ≤ {TARGET_S / 60:.0f} min: {'met' if met else 'missed'}")
    tail = [ln for ln in proc.stderr.splitlines() if "quickstart finished" in ln or "run(s) finished" in ln]
    for ln in tail:
        print(f"  {ln}")
    if args.keep:
        print(f"work dir kept: {tmp} (output in quickstart.out)")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    flags = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"reproduce: .venv/bin/python benchmarks/bench_quickstart.py {flags}")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
