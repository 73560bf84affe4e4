"""Benchmark: collecting a 2,000-run sweep from a local MLflow store, cold vs cached.

Why: researchers re-run ``adapmtl table`` many times while writing; reading thousands of runs must stay
interactive, and a second call (nothing changed) must be instant thanks to the Parquet cache.

Reproduce::

    MLFLOW_DISABLE_TELEMETRY=true .venv/bin/python benchmarks/bench_results_collect.py --runs 2000

The store is written once (MlflowClient.log_batch, one batch per run) under ``--store`` and reused by later
invocations with the same ``--runs`` (writing 2,000 runs through MLflow takes ~1–2 minutes; collecting does
not). Targets: cold < 10 s, cached < 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results import schema as S  # noqa: E402

TASKS = {
    "segment_semantic": {"miou": 25.5, "pixel_acc": 57.9},
    "normal": {"angle_mean": 17.1, "angle_median": 14.9, "within_11.25": 36.3, "within_22.5": 72.2,
               "within_30": 85.4},
    "depth_zbuffer": {"abs_err": 0.55, "rel_err": 0.22, "delta_1": 65.2, "delta_2": 89.9, "delta_3": 97.5},
}
METHODS = ["dense", "adapmtl", "snip", "lth", "imp", "disparse"]
ARCHS = ["resnet34", "mobilenetv2"]
SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
SWEEP = "bench-2000"


def run_specs(n_runs: int) -> list[dict]:
    """A sweep-shaped list of runs: dense references per (arch, seed), the rest trials (several samples)."""
    specs: list[dict] = []
    seeds = list(range(max(1, n_runs // 400)))
    for arch in ARCHS:
        for seed in seeds:
            specs.append({"method": "dense", "arch": arch, "seed": seed, "target": None, "sample": 0})
    sample = 0
    while len(specs) < n_runs:
        for arch in ARCHS:
            for method in METHODS[1:]:
                for target in SPARSITIES:
                    for seed in seeds:
                        if len(specs) < n_runs:
                            specs.append({"method": method, "arch": arch, "seed": seed, "target": target,
                                          "sample": sample})
        sample += 1
    return specs


def write_store(uri: str, n_runs: int) -> float:
    """Write the sweep through the real MLflow client; returns seconds spent."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp_id = client.create_experiment(SWEEP)
    rng = random.Random(0)
    directions = {"segment_semantic": {"miou": "higher", "pixel_acc": "higher"},
                  "normal": {"angle_mean": "lower", "angle_median": "lower", "within_11.25": "higher",
                             "within_22.5": "higher", "within_30": "higher"},
                  "depth_zbuffer": {"abs_err": "lower", "rel_err": "lower", "delta_1": "higher",
                                    "delta_2": "higher", "delta_3": "higher"}}
    comps = [S.BACKBONE] + [S.head(t) for t in TASKS]
    t0 = time.perf_counter()
    for i, spec in enumerate(run_specs(n_runs)):
        ts = 1_700_000_000_000 + i * 1000
        run = client.create_run(exp_id, start_time=ts, run_name=f"{spec['method']}-{i}")
        role = S.ROLE_REFERENCE if spec["method"] == "dense" else S.ROLE_TRIAL
        tags = {S.TAG_SWEEP: SWEEP, S.TAG_METHOD: spec["method"], S.TAG_ARCH: spec["arch"],
                S.TAG_DATASET: "nyuv2", S.TAG_SEED: str(spec["seed"]), S.TAG_ROLE: role,
                S.TAG_TRIAL_ID: f"t{i:05d}", S.TAG_GIT_SHA: "0" * 40, S.TAG_STATUS: "finished",
                S.TAG_RUN_KEY: f"{i:016x}", S.TAG_DIRECTIONS: S.directions_to_tag(directions)}
        if spec["target"] is not None:
            tags[S.TAG_TARGET_SPARSITY] = str(spec["target"])
        params = {f"train.p{k}": str(k) for k in range(30)}
        params.update({"method": spec["method"], "model.arch": spec["arch"], "seed": str(spec["seed"]),
                       "method.theta_init": str(rng.choice([-15, -10, -5])),
                       "method.window": str(rng.choice([100, 400]))})
        target = spec["target"] or 0.0
        metrics: list[Metric] = []

        def add(key: str, value: float, step: int = 20000, ts: int = ts, out: list = metrics) -> None:
            out.append(Metric(key, float(value), ts, step))

        for task, ms in TASKS.items():
            for m, v in ms.items():
                add(S.test_metric(task, m), v * (1 + rng.gauss(0, 0.03)))
                add(S.val_metric(task, m), v * (1 + rng.gauss(0, 0.03)))
            add(S.test_delta_t(task), rng.gauss(0, 3))
            add(S.val_delta_t(task), rng.gauss(0, 3))
            for step in range(0, 20001, 2000):  # a short step history per series
                add(S.train_loss(task), rng.random(), step, ts + step)
                add(S.train_weight(task), 1 + rng.random(), step, ts + step)
        add(S.test_delta_t(), rng.gauss(0, 3))
        add(S.val_delta_t(), rng.gauss(0, 3))
        for c in comps:
            add(S.final_sparsity(c), min(0.999, target * (1 + rng.gauss(0, 0.02))))
            add(S.threshold(c), rng.random())
            for step in range(0, 20001, 2000):
                add(S.sparsity(c), target * step / 20000, step, ts + step)
        add(S.final_sparsity(S.OVERALL), target)
        add(S.FINAL_PARAMS_TOTAL, 197.6e6)
        add(S.FINAL_PARAMS_NONZERO, 197.6e6 * (1 - target))
        add(S.FINAL_FLOPS_DENSE, 56.32e9)
        add(S.FINAL_FLOPS_SPARSE, 56.32e9 * (1 - target))
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        client.set_terminated(run.info.run_id, end_time=ts + 500)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--store", type=Path, default=Path("/tmp/adapmtl_bench_results"))
    ap.add_argument("--rebuild", action="store_true", help="rewrite the store even if it exists")
    args = ap.parse_args(argv)

    store_dir = args.store / f"runs{args.runs}"
    uri = f"sqlite:///{(store_dir / 'mlflow.db').resolve().as_posix()}"
    ready = store_dir / "READY"
    if args.rebuild or not ready.exists():
        shutil.rmtree(store_dir, ignore_errors=True)
        store_dir.mkdir(parents=True)
        print(f"writing {args.runs} runs to {uri} ...", flush=True)
        secs = write_store(uri, args.runs)
        ready.write_text(f"{secs:.1f}\n")
        print(f"  wrote {args.runs} runs in {secs:.1f} s", flush=True)

    t0 = time.perf_counter()
    from results import collect, tables

    import_s = time.perf_counter() - t0
    cache_dir = store_dir / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)

    t0 = time.perf_counter()
    df = collect.collect(SWEEP, tracking_uri=uri, cache_dir=cache_dir)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    df2 = collect.collect(SWEEP, tracking_uri=uri, cache_dir=cache_dir)
    cached = time.perf_counter() - t0
    assert len(df) == len(df2) == args.runs, (len(df), len(df2))
    t0 = time.perf_counter()
    df3 = collect.collect(SWEEP, tracking_uri=uri, use_cache=False, fast_sql=False)
    search_runs_s = time.perf_counter() - t0
    assert len(df3) == args.runs
    t0 = time.perf_counter()
    tab = tables.comparison(df, arch="resnet34", sparsity=0.9)
    table_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    tab = tables.comparison(df, arch="resnet34", sparsity=0.9)
    table_s = time.perf_counter() - t0

    rows = [("import results (incl. pandas)", import_s, None), ("collect cold (SQL read)", cold, 10.0),
            ("collect cached", cached, 1.0), ("collect cold via search_runs", search_runs_s, None),
            ("comparison table, 1st (+registry)", table_first, None), ("comparison table", table_s, None)]
    print(f"\n{args.runs} runs, {len(df.columns)} columns, table {tab.values.shape[0]} rows")
    print(f"{'step':<32}{'seconds':>9}{'target':>9}")
    for name, secs, target in rows:
        print(f"{name:<32}{secs:>9.3f}{'' if target is None else f'< {target:g}':>9}")
    print(f"{'cold / cached':<32}{cold / cached:>8.0f}x")
    print("\nreproduce: MLFLOW_DISABLE_TELEMETRY=true .venv/bin/python benchmarks/bench_results_collect.py "
          f"--runs {args.runs}")
    return 0 if cold < 10 and cached < 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
