"""``adapmtl table`` and ``adapmtl plot``: the results verbs of the CLI (DESIGN §3.7).

The orchestrator's entry point calls :func:`add_subcommands`; :func:`main` is a tiny stand-alone wrapper
(``python -m results.cli``, tests). Tracking URI: ``--tracking-uri`` > ``$MLFLOW_TRACKING_URI`` >
``sqlite:///<cwd>/.adapmtl/mlflow.db`` (:func:`results.schema.resolve_tracking_uri`, shared with ``run``).
Every failure is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from results import schema as S

TABLE_KINDS = ("comparison", "sweep", "tasks", "ablation", "cost")
PLOT_KINDS = ("sweep", "allocation", "weights", "sensitivity")
FORMATS = ("latex", "markdown", "csv")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (= MLflow experiment)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/.adapmtl/mlflow.db)")
    p.add_argument("--filter", default=None, help="extra MLflow filter string, e.g. \"tags.seed = '0'\"")
    p.add_argument("--no-cache", action="store_true", help="ignore the Parquet cache of collected runs")
    p.add_argument("--dataset", default=None)
    p.add_argument("--arch", default=None)
    p.add_argument("--sparsity", type=float, default=None, help="target sparsity, 0.9 or 90")
    p.add_argument("--convention", choices=("paper", "mean"), default="paper",
                   help="ΔT_t = sum (paper tables) or mean (Eq. 7) of the per-metric changes")
    p.add_argument("--average-seeds", action="store_true",
                   help="ΔT against the seed-averaged dense reference instead of the same-seed one")
    p.add_argument("--out", default=None, help="output file (default: stdout for tables, SWEEP-KIND.png)")


def add_subcommands(subparsers: Any) -> None:
    """Register ``table`` and ``plot`` on an argparse subparsers object."""
    t = subparsers.add_parser("table", help="paper tables from a sweep's MLflow runs")
    _common(t)
    t.add_argument("--kind", choices=TABLE_KINDS, default="comparison")
    t.add_argument("--format", choices=FORMATS, default="markdown")
    t.add_argument("--method", action="append", default=None,
                   help="cost: methods to list (repeatable; default all); ablation: the method (default adapmtl)")
    t.set_defaults(func=cmd_table)
    p = subparsers.add_parser("plot", help="figures from a sweep's MLflow runs (PNG + PDF)")
    _common(p)
    p.add_argument("--kind", choices=PLOT_KINDS, default="sweep")
    p.add_argument("--method", default="adapmtl", help="allocation/weights: method of the run to plot")
    p.add_argument("--run", default=None, help="allocation/weights: MLflow run id (default: best by val ΔT)")
    p.set_defaults(func=cmd_plot)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _collect(args: argparse.Namespace) -> Any:
    from results.collect import collect

    uri = S.resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):  # a local store is checked (never created) by collect
        from orchestrator.store import probe

        probe(uri)  # one bounded request: a dead server fails in seconds, not after MLflow's minutes of retries
    df = collect(args.sweep, tracking_uri=uri, filter_string=args.filter, use_cache=not args.no_cache)
    if df.empty:
        raise ValueError(f"sweep {args.sweep!r} has no runs")
    return df


def cmd_table(args: argparse.Namespace) -> int:
    try:
        from results import render, tables

        df = _collect(args)
        opts: dict[str, Any] = dict(dataset=args.dataset, arch=args.arch, sparsity=args.sparsity,
                                    convention=args.convention, average_seeds=args.average_seeds)
        if args.kind == "cost":
            opts["methods"] = args.method
        elif args.kind == "ablation" and args.method:
            opts["method"] = args.method[0]
        table = tables.build(args.kind, df, **opts)
        if args.out:
            for path in render.write(table, args.format, args.out):
                print(f"wrote {path}", file=sys.stderr)
        else:
            sys.stdout.write(render.render(table, args.format))
        return 0
    except (ValueError, KeyError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)


def cmd_plot(args: argparse.Namespace) -> int:
    try:
        from results import plots, tables

        df = _collect(args)
        out = Path(args.out or f"{args.sweep}-{args.kind}.png")
        if args.kind == "sweep":
            data = tables.sweep_data(df, dataset=args.dataset, convention=args.convention,
                                     average_seeds=args.average_seeds)
            if args.arch:
                data = data[data["arch"] == args.arch]
            plots.plot_sweep(data, out, convention=args.convention)
        elif args.kind == "sensitivity":
            runs, _, _ = tables._select(df, args.dataset, args.arch)
            plots.plot_sensitivity(tables.score_runs(runs, args.convention, args.average_seeds), out)
        else:
            from results.collect import metric_histories

            run_id = args.run or best_run(df, args.method, args.dataset, args.arch, args.sparsity)
            prefix = S.SPARSITY_PREFIX if args.kind == "allocation" else S.TRAIN_WEIGHT_PREFIX
            hist = metric_histories([run_id], [], tracking_uri=S.resolve_tracking_uri(args.tracking_uri),
                                    prefixes=[prefix])
            title = f"{args.method} run {run_id[:8]}"
            (plots.plot_allocation if args.kind == "allocation" else plots.plot_weights)(hist, out, title)
        print(f"wrote {out} (+ {'.pdf' if out.suffix != '.pdf' else '.png'})", file=sys.stderr)
        return 0
    except (ValueError, KeyError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)


def best_run(df: Any, method: str, dataset: str | None, arch: str | None, sparsity: float | None) -> str:
    """The trial a table would report for ``method`` (best val ΔT) at the selected dataset/arch/sparsity."""
    from results import tables
    from results.collect import metric_col

    runs, _, _ = tables._select(df, dataset, arch)
    runs, _ = tables._at_sparsity(runs, sparsity)
    runs = runs[(runs[S.TAG_ROLE] == S.ROLE_TRIAL) & (runs[S.TAG_METHOD] == method)]
    if runs.empty:
        raise ValueError(f"no {method!r} trial to plot (use --method or --run)")
    val = metric_col(S.val_delta_t())
    key = runs[val].fillna(float("-inf")) if val in runs else runs["end_time"].astype(float)
    return str(runs.loc[key.idxmax(), "run_id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adapmtl", description="AdapMTL sweep results")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
