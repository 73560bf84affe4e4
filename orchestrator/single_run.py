"""`adapmtl train`: one run of the engine, tracked in MLflow, without Ray (a quick check of a setup)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator import tracking


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train one run (no Ray), tracked in MLflow")
    p.add_argument("--dataset", default="synthetic_scenes")
    p.add_argument("--root", default=None, help="dataset root (synthetic: cache dir)")
    p.add_argument("--arch", default="resnet34")
    p.add_argument("--width", type=float, default=0.25, help="width multiplier (1.0 = the paper's model)")
    p.add_argument("--method", default="dense")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter (JSON value), repeatable")
    p.add_argument("--sparsity", type=float, default=None, help="target overall sparsity in (0, 1)")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--experiment", default="single-runs")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--workdir", default=".adapmtl")
    p.set_defaults(func=run)


def _params(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from trainers.config import RunConfig

    train = {k: v for k, v in {"iterations": args.iterations, "batch_size": args.batch_size}.items() if v}
    config = RunConfig(
        data={"name": args.dataset, "root": args.root, "resolution": args.resolution},
        model={"arch": args.arch, "width": args.width},
        train=train, method=args.method, method_params=_params(args.param),
        target_sparsity=args.sparsity, seed=args.seed,
    )
    workdir = Path(args.workdir).resolve()
    uri = tracking.resolve_tracking_uri(args.tracking_uri, workdir)
    tracking.check_reachable(uri)
    exp = tracking.ensure_experiment(uri, args.experiment)
    key = config.run_key()
    tags = {"method": config.method, "arch": config.model.arch, "dataset": config.data.name,
            "target_sparsity": config.target_sparsity or 0.0, "seed": config.seed,
            "role": "reference" if config.method == "dense" else "trial", "run_key": key, "status": "running",
            "sweep": args.experiment, "trial_id": key}
    run_id = tracking.create_run(uri, exp, run_name=f"{config.method}-{config.model.arch}-{key[:6]}", tags=tags)
    print(f"run {run_id} → {uri} (experiment {args.experiment!r})", file=sys.stderr)

    from orchestrator import signals
    from trainers.engine import train as train_run
    from trainers.reporting import MLflowReporter

    try:  # SIGTERM → KeyboardInterrupt: the run is marked KILLED, not left RUNNING (exit 143)
        with signals.sigterm_as_interrupt():
            result = train_run(config, MLflowReporter(uri, run_id), workdir=workdir / "runs" / key, resume=True)
    except BaseException as exc:  # errors before the engine's loop (a refused checkpoint, bad data) included
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        text = str(exc).strip().splitlines()
        tracking.mark_if_running(uri, run_id, status, f"{type(exc).__name__}: {text[0] if text else ''}")
        raise
    print(json.dumps({"run_id": run_id, "test": result.test, "sparsity": result.sparsity,
                      "seconds_per_step": round(result.seconds_per_step, 4)}, indent=2))
    return 0
