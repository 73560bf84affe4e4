"""Calibration probe for the embedded benchmark regime: does a configuration measure methods, or noise?

Runs the engine directly (no Ray, no MLflow: the numbers are the engine's own test metrics and ΔT against the
same seed's dense run) for dense × seeds and for each method × sparsity × seed, two processes at a time, and
prints the three figures ``examples/benchmark.yaml`` is calibrated against (issue "Comparisons a reviewer
would trust"):

1. the dense reference's coefficient of variation over seeds, per test metric (target ≤ 5 %);
2. at the highest sparsity, (best mean ΔT − worst mean ΔT) / (largest seed std of ΔT) (target ≥ 3);
3. per fixed-mask baseline, ΔT(0.5) − ΔT(highest) against 2 × its seed std (target: larger).

The end-to-end check runs the real sweep (``adapmtl run examples/benchmark.yaml``) and reads the same figures
from MLflow with ``benchmarks/benchmark_figures.py``; this probe only makes trying a regime cheap. Results are
cached per job in ``--cache`` (JSON lines), so re-running with more seeds or methods reuses what exists.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate.py --resolution 64 --width 0.0625 \\
        --iterations 1500 --seeds 0 1 2 --methods dense snip imp --sparsities 0.5 0.95
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIXED_MASK = ("snip", "lth", "imp", "disparse")


def _job_key(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]


def _run(job: dict[str, Any]) -> dict[str, Any]:
    """One engine run (the dense reference's metrics are passed in for trials)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from trainers.config import RunConfig
    from trainers.engine import train

    cfg = RunConfig(**job["config"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dense_ckpt = job.get("dense_checkpoint")
        result = train(cfg, None, workdir=tmp, reference=job.get("reference"),
                       dense_checkpoint=Path(dense_ckpt) if dense_ckpt else None)
        if job.get("keep_checkpoint"):
            keep = Path(job["keep_checkpoint"])
            keep.parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / "final.pt").replace(keep)
    return {"test": result.test, "val": result.val, "test_dt": result.test_delta_t, "sparsity": result.sparsity,
            "compute": result.compute, "seconds": time.perf_counter() - t0}


def _config(args: argparse.Namespace, method: str, seed: int, sparsity: float | None,
            params: dict[str, Any]) -> dict[str, Any]:
    train = {"iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr,
             "lr_decay_every": args.lr_decay_every or max(1, args.iterations // 3), "lr_decay": 0.5,
             "weight_decay": args.weight_decay, "val_every": args.iterations, "log_every": args.iterations,
             "checkpoint_every": args.iterations}
    return {"data": {"name": "synthetic_scenes", "resolution": args.resolution, "tasks": args.tasks,
                     "options": {"n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test,
                                 **({"class_set": args.class_set} if args.class_set != "full" else {})}},
            "model": {"arch": "resnet34", "width": args.width, "dropout": args.dropout}, "train": train,
            "method": method,
            "method_params": params, "target_sparsity": sparsity, "seed": seed}


def _method_params(args: argparse.Namespace, method: str) -> dict[str, Any]:
    return json.loads(args.params).get(method, {}) if args.params else {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--width", type=float, default=0.0625)
    p.add_argument("--dropout", type=float, default=0.5, help="ASPP dropout (the official 0.5 by default)")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay-every", type=int, default=None)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--n-val", type=int, default=64)
    p.add_argument("--n-test", type=int, default=256)
    p.add_argument("--tasks", nargs="+", default=["segment_semantic", "normal", "depth_zbuffer"])
    p.add_argument("--class-set", default="full", choices=("full", "coarse"))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["dense"])
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.95])
    p.add_argument("--params", default=None, help='JSON {method: {param: value}}')
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache", default=str(ROOT / ".adapmtl" / "calibration.jsonl"))
    args = p.parse_args(argv)

    cache_path = Path(args.cache)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache: dict[str, dict[str, Any]] = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            rec = json.loads(line)
            cache[rec["key"]] = rec["result"]
    ckpt_dir = cache_path.parent / "calibration-dense"

    def run_all(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        todo = [j for j in jobs if _job_key(j["id"]) not in cache]
        if todo:
            with ProcessPoolExecutor(max_workers=args.workers) as pool:
                for job, res in zip(todo, pool.map(_run, todo)):
                    cache[_job_key(job["id"])] = res
                    with cache_path.open("a") as fh:
                        fh.write(json.dumps({"key": _job_key(job["id"]), "id": job["id"], "result": res}) + "\n")
                    print(f"  done {job['id']['method']} s={job['id']['sparsity']} seed={job['id']['seed']} "
                          f"in {res['seconds']:.0f} s", file=sys.stderr)
        return [cache[_job_key(j["id"])] for j in jobs]

    # phase 1: dense references
    dense_jobs = []
    for seed in args.seeds:
        cfg = _config(args, "dense", seed, None, {})
        ident = {"config": cfg, "method": "dense", "sparsity": None, "seed": seed}
        dense_jobs.append({"id": ident, "config": cfg,
                           "keep_checkpoint": str(ckpt_dir / f"{_job_key(ident)}.pt")})
    dense = run_all(dense_jobs)
    refs = {seed: {"val": d["val"], "test": d["test"]} for seed, d in zip(args.seeds, dense)}
    ckpts = {seed: j["keep_checkpoint"] for seed, j in zip(args.seeds, dense_jobs)}

    print(f"\nregime: {args.resolution}² width {args.width} {args.iterations} it batch {args.batch_size} "
          f"classes {args.class_set} "
          f"lr {args.lr} wd {args.weight_decay} n_train {args.n_train} n_test {args.n_test}; "
          f"dense {statistics.mean(d['seconds'] for d in dense):.0f} s/run")
    worst = 0.0
    for task in dense[0]["test"]:
        for metric in dense[0]["test"][task]:
            vals = [d["test"][task][metric] for d in dense]
            mean, sd = statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else float("nan")
            cv = abs(sd / mean) * 100 if mean else float("inf")
            worst = max(worst, cv)
            print(f"  dense {task}/{metric}: {mean:8.3f} ± {sd:.3f}  CV {cv:5.1f} %")
    print(f"  -> largest dense CV {worst:.1f} % (target ≤ 5)")

    # phase 2: methods × sparsities × seeds
    methods = [m for m in args.methods if m != "dense"]
    table: dict[tuple[str, float], list[dict[str, Any]]] = {}
    jobs, where = [], []
    for m in methods:
        for s in args.sparsities:
            for seed in args.seeds:
                cfg = _config(args, m, seed, s, _method_params(args, m))
                ident = {"config": cfg, "method": m, "sparsity": s, "seed": seed}
                jobs.append({"id": ident, "config": cfg, "reference": refs[seed],
                             "dense_checkpoint": ckpts[seed] if Path(ckpts[seed]).exists() else None})
                where.append((m, s))
    for key, res in zip(where, run_all(jobs)):
        table.setdefault(key, []).append(res)
    if not methods:
        return 0
    print()
    stats: dict[tuple[str, float], tuple[float, float, float, float]] = {}
    for (m, s), rs in sorted(table.items()):
        dts = [r["test_dt"]["overall"] for r in rs]
        ach = statistics.mean(r["sparsity"]["overall"] for r in rs) * 100
        mean = statistics.mean(dts)
        sd = statistics.stdev(dts) if len(dts) > 1 else float("nan")
        secs = statistics.mean(r["seconds"] for r in rs)
        stats[(m, s)] = (mean, sd, ach, secs)
        per_task = {t: statistics.mean(r["test_dt"][t] for r in rs) for t in rs[0]["test_dt"] if t != "overall"}
        tasks = " ".join(f"{t[:4]} {v:+6.2f}" for t, v in per_task.items())
        print(f"  {m:9s} s={s:<5g} ΔT {mean:+7.2f} ± {sd:5.2f} (n={len(dts)}) achieved {ach:5.1f} % "
              f"[{tasks}] {secs:.0f} s/run")
    top = max(args.sparsities)
    at_top = [stats[(m, top)] for m in methods if (m, top) in stats]
    if len(at_top) > 1:
        spread = max(v[0] for v in at_top) - min(v[0] for v in at_top)
        largest_sd = max(v[1] for v in at_top)
        print(f"  -> separation at {top:g}: {spread:.2f} / {largest_sd:.2f} = {spread / largest_sd:.1f} (target ≥ 3)")
    low = min(args.sparsities)
    for m in methods:
        if m in FIXED_MASK and (m, low) in stats and (m, top) in stats and low != top:
            drop = stats[(m, low)][0] - stats[(m, top)][0]
            sd = max(stats[(m, low)][1], stats[(m, top)][1])
            ok = "ok" if drop > 2 * sd else "NOT MET"
            print(f"  -> {m}: ΔT({low:g}) − ΔT({top:g}) = {drop:.2f} vs 2·std {2 * sd:.2f}: {ok}")
    _ = math
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
