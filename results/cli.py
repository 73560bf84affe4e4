"""``adapmtl table`` and ``adapmtl plot``: the results verbs of the CLI (DESIGN §3.7).

The orchestrator's entry point calls :func:`add_subcommands`; :func:`main` is a tiny stand-alone wrapper
(``python -m results.cli``, tests). Tracking URI: ``--tracking-uri`` > ``$MLFLOW_TRACKING_URI`` >
``sqlite:///<cwd>/.adapmtl/mlflow.db`` (:func:`results.schema.resolve_tracking_uri`, shared with ``run``).
Every failure is one line on stderr (``adapmtl: error: ...``, :mod:`results.console`) and exit status 2.

Output format: ``--format`` if given, else inferred from ``--out``'s extension (``.tex`` → latex, ``.md`` →
markdown, ``.csv`` → csv); an explicit ``--format`` that contradicts the extension is an error, since
Markdown inside a ``.tex`` file only fails later, in the paper's build. Plots write PNG and PDF side by side;
``--out`` may end in ``.png`` or ``.pdf`` (or have no extension).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from results import schema as S
from results.console import error as _error

TABLE_KINDS = ("comparison", "sweep", "tasks", "ablation", "cost")
PLOT_KINDS = ("sweep", "allocation", "weights", "sensitivity")
FORMATS = ("latex", "markdown", "csv", "terminal")
#: ``--out`` extension → table format (item 5 of issue 14: never Markdown inside a .tex file)
FORMAT_BY_SUFFIX: dict[str, str] = {".tex": "latex", ".md": "markdown", ".markdown": "markdown", ".csv": "csv"}
PLOT_SUFFIXES: tuple[str, ...] = (".png", ".pdf")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (= MLflow experiment)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db)")
    p.add_argument("--workdir", default=None,
                   help="work directory whose local store to read (default: ./.adapmtl); ignored with a URI")
    p.add_argument("--filter", default=None, help="extra MLflow filter string, e.g. \"tags.seed = '0'\"")
    p.add_argument("--no-cache", action="store_true", help="ignore the Parquet cache of collected runs")
    p.add_argument("--dataset", default=None,
                   help="dataset to report (default: the one most trials used)")
    p.add_argument("--arch", default=None,
                   help="architecture to report (default: the one most trials used)")
    p.add_argument("--sparsity", type=float, default=None,
                   help="target sparsity, 0.9 or 90 (default: the one most methods cover, ties → 90 %%)")
    p.add_argument("--convention", choices=("paper", "mean"), default="paper",
                   help="ΔT_t = sum (paper tables) or mean (Eq. 7) of the per-metric changes")
    p.add_argument("--average-seeds", action="store_true",
                   help="ΔT against the seed-averaged dense reference instead of the same-seed one")
    p.add_argument("--out", default=None,
                   help="output file (default: stdout for tables, SWEEP-KIND.png for plots)")


def add_subcommands(subparsers: Any) -> None:
    """Register ``table`` and ``plot`` on an argparse subparsers object."""
    t = subparsers.add_parser("table", help="paper tables from a sweep's MLflow runs",
                              description="A paper table from a sweep's MLflow runs (LaTeX, Markdown or CSV).")
    _common(t)
    t.add_argument("--kind", choices=TABLE_KINDS, default="comparison",
                   help="comparison (Tables 1-2), sweep (Fig. 4 data), tasks (Table 3), ablation (Table 5), "
                        "cost (Table 4); default: comparison")
    t.add_argument("--format", choices=FORMATS, default=None,
                   help="default: from --out's extension (.tex, .md, .csv), else markdown; terminal: a "
                        "compact table that fits 100 columns")
    t.add_argument("--ci", dest="ci", action="store_true", default=None,
                   help="add the 95%% CI column of the overall ΔT (default: on except for LaTeX)")
    t.add_argument("--no-ci", dest="ci", action="store_false", help="leave out the 95%% CI column")
    t.add_argument("--std", choices=("stacked", "inline", "none", "separate"), default="stacked",
                   help="LaTeX: seed std under the mean (default), after it, omitted, or as a second table")
    t.add_argument("--split-tasks", action="store_true",
                   help="comparison: one table per task (each with sparsity and overall ΔT), for print")
    t.add_argument("--method", action="append", default=None,
                   help="cost: methods to list (repeatable; default all); ablation: the method (default adapmtl)")
    t.set_defaults(func=cmd_table)
    p = subparsers.add_parser("plot", help="figures from a sweep's MLflow runs (PNG + PDF)",
                              description="A figure from a sweep's MLflow runs, written as PNG and PDF.")
    _common(p)
    p.add_argument("--kind", choices=PLOT_KINDS, default="sweep",
                   help="sweep (Fig. 4), allocation (Fig. 3), weights (task weights β), sensitivity "
                        "(Fig. 5 style); default: sweep")
    p.add_argument("--method", default="adapmtl", help="allocation/weights: method of the run to plot")
    p.add_argument("--run", default=None,
                   help="allocation/weights: MLflow run id (default: the group's reported best=true trial)")
    p.add_argument("--seed", type=int, default=None, help="allocation/weights: seed of the run (default: lowest)")
    p.add_argument("--band", choices=("ci", "std", "none"), default="ci",
                   help="sweep: band around the mean, 95%% CI over seeds (default) or ±1 std")
    p.set_defaults(func=cmd_plot)


def _fail(msg: str) -> int:
    return _error(msg)


def table_format(fmt: str | None, out: str | None) -> str:
    """The table format: ``--format``, else ``--out``'s extension, else Markdown; a contradiction raises."""
    inferred = FORMAT_BY_SUFFIX.get(Path(out).suffix.lower()) if out else None
    if fmt is None:
        if out and inferred is None:
            raise ValueError(f"cannot tell the format of --out {out} from its extension; use .tex, .md or .csv, "
                             f"or pass --format {'|'.join(FORMATS)}")
        return inferred or "markdown"
    if inferred is not None and inferred != fmt:
        raise ValueError(f"--format {fmt} contradicts --out {out} (a {inferred} file); drop --format or change "
                         "the extension")
    return fmt


def plot_path(sweep: str, kind: str, out: str | None) -> Path:
    """Where a plot goes: ``--out`` (``.png``/``.pdf``/no extension), default ``SWEEP-KIND.png``."""
    path = Path(out or f"{sweep}-{kind}.png")
    if path.suffix and path.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"--out {out}: plots are written as PNG and PDF; use a .png or .pdf name")
    return path


def _uri(args: argparse.Namespace) -> str:
    return S.resolve_tracking_uri(args.tracking_uri, getattr(args, "workdir", None))


def _collect(args: argparse.Namespace) -> Any:
    from results.collect import collect

    uri = _uri(args)
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

        fmt = table_format(args.format, args.out)
        df = _collect(args)
        opts: dict[str, Any] = dict(dataset=args.dataset, arch=args.arch, sparsity=args.sparsity,
                                    convention=args.convention, average_seeds=args.average_seeds)
        if args.kind == "cost":
            opts["methods"] = args.method
        elif args.kind == "ablation" and args.method:
            opts["method"] = args.method[0]
        if args.split_tasks:
            if args.kind != "comparison":
                raise ValueError("--split-tasks applies to --kind comparison")
            table = tables.split_by_task(df, **{k: v for k, v in opts.items() if v is not None})
        else:
            table = tables.build(args.kind, df, **opts)
        if args.out:
            from results.bibtex import sweep_bib_path

            for path in render.write(table, fmt, args.out, bib=sweep_bib_path(args.out, args.sweep), ci=args.ci,
                                     std=args.std):
                print(f"wrote {path}", file=sys.stderr)
        else:
            for t in table if isinstance(table, list) else [table]:
                sys.stdout.write(render.render(t, fmt, ci=args.ci, std=args.std))
        return 0
    except (ValueError, KeyError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)


def cmd_plot(args: argparse.Namespace) -> int:
    try:
        from results import plots, tables

        out = plot_path(args.sweep, args.kind, args.out)
        df = _collect(args)
        if args.kind == "sweep":
            data = tables.sweep_data(df, dataset=args.dataset, convention=args.convention,
                                     average_seeds=args.average_seeds)
            if args.arch:
                data = data[data["arch"] == args.arch]
            plots.plot_sweep(data, out, convention=args.convention, band=args.band)
        elif args.kind == "sensitivity":
            runs, _, _ = tables._select(df, args.dataset, args.arch)
            plots.plot_sensitivity(tables.score_runs(runs, args.convention, args.average_seeds), out)
        else:
            from results.collect import metric_histories

            run_id = args.run or best_run(df, args.method, args.dataset, args.arch, args.sparsity, args.seed)
            prefix = S.SPARSITY_PREFIX if args.kind == "allocation" else S.TRAIN_WEIGHT_PREFIX
            hist = metric_histories([run_id], [], tracking_uri=_uri(args), prefixes=[prefix])
            row = df[df["run_id"] == run_id].iloc[0]
            title = run_title(row)
            if args.kind == "allocation":
                target = row.get(S.TAG_TARGET_SPARSITY)
                plots.plot_allocation(hist, out, title, float(target) if target is not None and target == target
                                      and float(target) > 0 else None)
            else:
                plots.plot_weights(hist, out, title)
        print(f"wrote {out} (+ {'.pdf' if out.suffix != '.pdf' else '.png'})", file=sys.stderr)
        return 0
    except (ValueError, KeyError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)


def best_run(df: Any, method: str, dataset: str | None, arch: str | None, sparsity: float | None,
             seed: int | None = None) -> str:
    """The trial the tables report for ``method`` at the selected dataset/arch/sparsity: the group's
    ``best=true`` run (the same rule as ``results.tables.pick_trials``), of ``seed`` (default: the lowest)."""
    from results import tables

    runs, _, _ = tables._select(df, dataset, arch)
    runs, _ = tables._at_sparsity(runs, sparsity)
    runs = runs[(runs[S.TAG_ROLE] == S.ROLE_TRIAL) & (runs[S.TAG_METHOD] == method)]
    if runs.empty:
        raise ValueError(f"no {method!r} trial to plot (use --method or --run)")
    seeds = sorted(int(s) for s in runs[S.TAG_SEED].dropna().unique())
    if seed is not None and seed not in seeds:
        raise ValueError(f"no {method!r} trial with seed {seed} (have: {', '.join(map(str, seeds))})")
    chosen = seed if seed is not None else (seeds[0] if seeds else None)
    if chosen is not None:
        runs = runs[runs[S.TAG_SEED].astype(float) == chosen]
    picked = tables.pick_trials(runs, [S.TAG_METHOD, S.TAG_VARIANT])
    if S.TAG_VARIANT in picked and len(picked) > 1:  # prefer the full method over ablation variants
        plain = picked[picked[S.TAG_VARIANT].isna() | (picked[S.TAG_VARIANT] == "")]
        picked = plain if not plain.empty else picked
    return str(picked["run_id"].iloc[0])


def run_title(row: Any) -> str:
    """"AdapMTL, 90% target sparsity, seed 0" (what a figure shows, not a run id)."""
    from results.tables import method_info

    name = method_info(str(row[S.TAG_METHOD]))["display"]
    variant = row.get(S.TAG_VARIANT)
    if isinstance(variant, str) and variant:
        name = variant if variant.startswith(name) else f"{name} {variant}"
    target = row.get(S.TAG_TARGET_SPARSITY)
    parts = [name]
    if target is not None and target == target and float(target) > 0:
        parts.append(f"{float(target) * 100:g}% target sparsity")
    if row.get(S.TAG_SEED) is not None:
        parts.append(f"seed {int(float(row[S.TAG_SEED]))}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    from results.console import ArgumentParser

    parser = ArgumentParser(prog="adapmtl", description="AdapMTL sweep results")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
