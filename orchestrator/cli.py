"""The `adapmtl` command. Each verb lives in its own module and registers itself here.

Errors are one clear line on stderr and a non-zero exit (2 for bad input), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adapmtl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    from orchestrator import single_run

    single_run.add_subcommand(sub)
    p = sub.add_parser("params", help="parameter counts of backbone vs heads (Table 4 sizes)")
    p.add_argument("--arch", default="resnet34")
    p.add_argument("--dataset", default="nyuv2")
    p.add_argument("--width", type=float, default=1.0)
    p.set_defaults(func=_params)
    for module in ("orchestrator.sweep_cli", "results.cli"):
        try:
            mod = __import__(module, fromlist=["add_subcommands"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.add_subcommands(sub)
    return parser


def _params(args: argparse.Namespace) -> int:
    from trainers.models.summary import main as summary_main

    return summary_main(["--arch", args.arch, "--dataset", args.dataset, "--width", str(args.width)]) or 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from orchestrator.signals import EXIT_SIGINT, EXIT_SIGTERM, is_sigterm
    from orchestrator.sweep_lock import SweepBusy

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): runs are KILLED and resumable
        print(f"adapmtl: {_one_line(exc) if str(exc).strip() else 'interrupted'}", file=sys.stderr)
        return EXIT_SIGTERM if is_sigterm(exc) else EXIT_SIGINT
    except (ValueError, FileNotFoundError, ConnectionError, SweepBusy) as exc:
        print(f"adapmtl: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"adapmtl: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errs = exc.errors()
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in errs)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
