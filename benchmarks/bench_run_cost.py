"""Benchmark: the per-run cost of ``examples/benchmark.yaml`` (one trial through the engine), this tree vs another.

Why: the calibrated benchmark (6 methods × 3 sparsities × 3 seeds + references) is this project's everyday
workload; its wall time is the sum of ~57 runs of this shape (64² synthetic scenes, width-1/16 ResNet34, 3
tasks, 2,000 iterations, batch 8, validation every 500 on 64 images, test on 512, a checkpoint every 500,
logging every 100). What a sweep pays per run is ``trainers.engine.train`` in an already-warm trial actor,
so that is what is timed: each measurement is a fresh interpreter that imports the tree under test, builds
the run's RunConfig from the spec (``--method``; ``dense`` = a reference), warms the dataset cache, then
times one ``train`` call with a ``MemoryReporter`` (thread CPU time and wall time; the figure is CPU time,
which other processes time-slicing the shared cores do not inflate).

With ``--baseline DIR`` (a source tree of an older commit: ``git archive <commit> | tar -x -C DIR``) the same
run is timed with that code, interleaved ``B N B N …`` so load drifts hit both alike, and the table gives
new/baseline per round and its median. ``--iterations`` shortens the run (validation, checkpoint and test
stay as in the spec, so a shorter run over-weights them; 2000 = the benchmark as specified). ``--profile
OUT`` writes a cProfile of one run of this tree instead.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_run_cost.py --baseline /tmp/base --method dense \
        --iterations 500 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "examples" / "benchmark.yaml"

#: Runs in the child interpreter (``PYTHONPATH`` = the tree under test); prints one JSON line.
CHILD = r"""
import json, os, sys, tempfile, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from orchestrator.plan import build_plan
from orchestrator.spec import load_spec
from trainers.config import RunConfig
from trainers.engine import train
from trainers.reporting import MemoryReporter

spec, method, iters, profile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if os.environ.get("BENCH_RUN_COST_PER_LAYER"):  # this tree's AdapMTL without its fused group nodes
    import functools
    import trainers.adapmtl
    trainers.adapmtl.install_soft_thresholds = functools.partial(trainers.adapmtl.install_soft_thresholds,
                                                                 fused=False)
plan = build_plan(load_spec(Path(spec)))
kw = plan.references[0].config if method == "dense" else next(
    g.base for g in plan.groups if g.base["method"] == method and g.base.get("target_sparsity") == 0.9)
kw = dict(kw)
kw["train"] = {**kw["train"], "iterations": iters}
cfg = RunConfig(**kw)
from trainers.engine import build_run
build_run(cfg, torch.device("cpu"))  # the dataset cache (a sweep renders it once, before its runs)
with tempfile.TemporaryDirectory() as tmp:
    c0, t0 = time.thread_time(), time.perf_counter()
    if profile:
        import cProfile
        cProfile.run("res = train(cfg, MemoryReporter(), workdir=Path(tmp) / 'run')", profile)
    else:
        res = train(cfg, MemoryReporter(), workdir=Path(tmp) / "run")
    cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
loss = {t: v for t, v in (res.test or {}).items()}
print(json.dumps({"cpu": cpu, "wall": wall, "steps": res.steps, "test": loss, "load": os.getloadavg()[0]}))
"""


def _run(tree: Path, spec: Path, method: str, iterations: int, profile: str = "", per_layer: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true")
    if per_layer:
        env["BENCH_RUN_COST_PER_LAYER"] = "1"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(spec), method, str(iterations), profile], env=env,
                          cwd=str(tree), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({tree}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _max_rel(a: dict, b: dict) -> str:
    """The largest |b − a| / max(|a|, 1e-12) over every test metric of every task, with the metric's values."""
    rel, key, va, vb = max(((abs(b[t][k] - v) / max(abs(v), 1e-12), f"{t}/{k}", v, b[t][k])
                            for t, ms in a.items() for k, v in ms.items()), default=(0.0, "-", 0.0, 0.0))
    return f"{rel:.2e} ({key}: {va:.4g} → {vb:.4g})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="dense", help="dense (a reference) or a method at 90 %% sparsity")
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--baseline", type=Path, help="source tree of the code to compare with")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--profile", help="write a cProfile of one run of this tree to this file")
    ap.add_argument("--per-layer", action="store_true",
                    help="this tree's AdapMTL on its per-layer path (no fused group nodes): with --baseline, "
                         "shows whether everything else is bit for bit the baseline's")
    ap.add_argument("--spec", type=Path, default=SPEC,
                    help="the sweep spec both trees run (an older tree needs a spec it can validate, e.g. its own "
                         "examples/benchmark.yaml)")
    args = ap.parse_args(argv)
    os.environ.setdefault("ADAPMTL_CACHE", str(Path(tempfile.gettempdir()) / "adapmtl-bench-cache"))
    if args.profile:
        r = _run(REPO, args.spec, args.method, args.iterations, args.profile)
        print(f"{args.method}: {r['cpu']:.1f} s CPU, {r['wall']:.1f} s wall ({r['steps']} steps); profile in "
              f"{args.profile}; load {r['load']:.2f}")
        return 0
    rows = []
    for i in range(args.rounds):
        base = _run(args.baseline, args.spec, args.method, args.iterations) if args.baseline else None
        new = _run(REPO, args.spec, args.method, args.iterations, per_layer=args.per_layer)
        rows.append((base, new))
        line = f"round {i + 1}: this tree {new['cpu']:.1f} s CPU / {new['wall']:.1f} s wall"
        if base:
            same = "same test metrics (bit for bit)" if base["test"] == new["test"] else \
                f"test metrics differ: max relative difference {_max_rel(base['test'], new['test'])}"
            line += (f"; baseline {base['cpu']:.1f} s / {base['wall']:.1f} s; ratio {new['cpu'] / base['cpu']:.3f}"
                     f" (CPU) {new['wall'] / base['wall']:.3f} (wall); {same}")
        print(line + f"; load {new['load']:.2f}", flush=True)
    if args.baseline:
        cpu = statistics.median(n["cpu"] / b["cpu"] for b, n in rows)
        wall = statistics.median(n["wall"] / b["wall"] for b, n in rows)
        print(f"\n{args.method}, {args.iterations} iterations: this tree / baseline = {cpu:.3f} (CPU time), "
              f"{wall:.3f} (wall), median of {args.rounds} round(s)")
    flags = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"reproduce: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_run_cost.py {flags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
