"""The `adapmtl` command. Each verb lives in its own module and registers itself here.

Errors are one clear line on stderr, always prefixed ``adapmtl: error:`` (:mod:`results.console`), and a
non-zero exit (2 for bad input, 1 for an unexpected failure), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from results.console import EXIT_BAD_INPUT, ArgumentParser, error  # noqa: E402

DESCRIPTION = """\
Prune multitask dense-prediction models (AdapMTL and the baselines it compares against: SNIP, LTH, IMP,
DiSparse) at sweep scale: a sweep spec (YAML) names datasets, architectures, methods, sparsities and seeds;
`adapmtl run` trains the dense references and every group on Ray Tune / Ray Train, tracked in MLflow;
`adapmtl table` and `adapmtl plot` turn the runs into the paper's tables (LaTeX, Markdown, CSV) and figures.
"""
EPILOG = """\
start here:  adapmtl quickstart          (CPU-sized sweep end to end, a few minutes)
then:        adapmtl run SPEC --dry-run  ·  adapmtl run SPEC  ·  adapmtl status NAME  ·  adapmtl table NAME
`adapmtl VERB --help` lists a verb's options.
"""


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked (start-up cost)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw: object) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kw: object) -> None:
        print(f"adapmtl {version()}")
        parser.exit()


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("adapmtl-sweeps")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="adapmtl", description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    from orchestrator import single_run

    single_run.add_subcommand(sub)
    p = sub.add_parser("params", help="parameter counts of backbone vs heads (Table 4 sizes)",
                       description="Parameter counts of the backbone and each task head (conv weights are what "
                                   "sparsity counts; biases and BatchNorm are never pruned).")
    p.add_argument("--arch", default="resnet34", help="architecture: resnet34 or mobilenetv2 (default: resnet34)")
    p.add_argument("--dataset", default="nyuv2",
                   help="dataset whose task heads to build: nyuv2 (3 tasks) or taskonomy (5) (default: nyuv2)")
    p.add_argument("--width", type=float, default=1.0,
                   help="width multiplier of backbone and heads (1.0 = the paper's model; default 1.0)")
    p.set_defaults(func=_params)
    for module in ("orchestrator.sweep_cli", "results.cli", "orchestrator.relocate"):
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
        # an interruption the user asked for is not an error: no "error:" prefix, still one line
        print(f"adapmtl: {_one_line(exc) if str(exc).strip() else 'interrupted'}", file=sys.stderr, flush=True)
        return EXIT_SIGTERM if is_sigterm(exc) else EXIT_SIGINT
    except (ValueError, FileNotFoundError, ConnectionError, SweepBusy) as exc:
        return error(_one_line(exc), code=EXIT_BAD_INPUT)
    except Exception as exc:
        return error(f"{type(exc).__name__}: {_one_line(exc)}", code=1)


def _one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errs = exc.errors()
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in errs)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
