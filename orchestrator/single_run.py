"""`adapmtl train`: one run of the engine, tracked in MLflow, without Ray (a quick check of a setup)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator import tracking

#: ``--flag`` → ``train.<field>`` of RunConfig (unset flags keep the dataset's defaults)
TRAIN_FLAGS: dict[str, str] = {
    "iterations": "iterations", "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay",
    "lr_decay_every": "lr_decay_every", "lr_decay": "lr_decay", "val_every": "val_every",
    "log_every": "log_every", "checkpoint_every": "checkpoint_every",
}


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train one run (no Ray), tracked in MLflow",
        description="Train one run of the engine without Ray (a quick check of a setup), tracked in MLflow. "
                    "Settings come from --config (a RunConfig as YAML/JSON: data, model, train, method, "
                    "method_params, target_sparsity, seed) and the flags below, flags winning; unset training "
                    "settings take the dataset's defaults (supplement Table 1 for NYUv2/Taskonomy).")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="RunConfig file (YAML or JSON); the flags below override its values")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None,
                   help="synthetic_scenes (default, generated), nyuv2 or taskonomy")
    g.add_argument("--root", default=None, help="dataset root (synthetic scenes: cache directory)")
    g.add_argument("--tasks", default=None, metavar="T1,T2",
                   help="comma-separated tasks (default: the dataset's default tasks)")
    g.add_argument("--resolution", type=int, default=None, help="input resolution in pixels (square)")
    g.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option (JSON value), repeatable, e.g. n_train=256")
    g = p.add_argument_group("model")
    g.add_argument("--arch", default=None, help="resnet34 (default) or mobilenetv2")
    g.add_argument("--width", type=float, default=None,
                   help="width multiplier (1.0 = the paper's model; default 0.25 without --config)")
    g.add_argument("--head-channels", type=int, default=None, help="hidden width of the ASPP heads")
    g = p.add_argument_group("method")
    g.add_argument("--method", default=None, help="dense (default), adapmtl, snip, lth, imp or disparse")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter (JSON value), repeatable, e.g. theta_init=-5")
    g.add_argument("--sparsity", type=float, default=None,
                   help="target overall sparsity in (0, 1) (required by every pruning method)")
    g = p.add_argument_group("training (unset: the dataset's defaults)")
    g.add_argument("--iterations", type=int, default=None, help="training steps")
    g.add_argument("--batch-size", type=int, default=None, help="training batch size")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    g.add_argument("--weight-decay", type=float, default=None, help="weight decay (coupled, as the official code)")
    g.add_argument("--lr-decay-every", type=int, default=None, help="step-decay period in steps")
    g.add_argument("--lr-decay", type=float, default=None, help="step-decay factor in (0, 1]")
    g.add_argument("--val-every", type=int, default=None, help="validation period in steps")
    g.add_argument("--log-every", type=int, default=None, help="logging period in steps")
    g.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint period in steps")
    g.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    g = p.add_argument_group("tracking")
    g.add_argument("--experiment", default="single-runs", help="MLflow experiment (default: single-runs)")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db)")
    g.add_argument("--workdir", default=".adapmtl",
                   help="work directory: checkpoints and the local MLflow store (default: ./.adapmtl)")
    p.set_defaults(func=run)


def _params(items: list[str], flag: str = "--param") -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _load_config_file(path: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML/JSON in --config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping (data, model, train, method, ...)")
    return data


def config_from_args(args: argparse.Namespace):
    """The RunConfig of ``adapmtl train``: ``--config`` file, then every flag that was given."""
    from trainers.config import RunConfig

    base = _load_config_file(args.config) if args.config else {}
    data = dict(base.get("data") or {})
    model = dict(base.get("model") or {})
    train = dict(base.get("train") or {})
    for key, value in (("name", args.dataset), ("root", args.root), ("resolution", args.resolution)):
        if value is not None:
            data[key] = value
    if args.tasks:
        data["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.data_option:
        data["options"] = {**(data.get("options") or {}), **_params(args.data_option, "--data-option")}
    if args.arch is not None:
        model["arch"] = args.arch
    if args.width is not None:
        model["width"] = args.width
    elif not args.config:
        model.setdefault("width", 0.25)  # CPU-sized unless a config says otherwise
    if args.head_channels is not None:
        model["head_channels"] = args.head_channels
    for flag, key in TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            train[key] = value
    config = {**base, "data": data, "model": model, "train": train}
    if args.method is not None:
        config["method"] = args.method
    if args.param:
        config["method_params"] = {**(base.get("method_params") or {}), **_params(args.param)}
    if args.sparsity is not None:
        config["target_sparsity"] = args.sparsity
    if args.seed is not None:
        config["seed"] = args.seed
    return RunConfig(**config)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
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
