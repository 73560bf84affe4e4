"""The sweep verbs of ``adapmtl``: run, submit, resume, status, quickstart (DESIGN §3.7).

Everything a verb needs is checked before Ray starts (spec, names, bounds, dataset root, tracking store, Ray
address); a problem is one line on stderr and exit code 2 (``orchestrator.cli.main`` maps the exceptions).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.paths import SweepPaths, default_workdir, find_sweep

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a sweep (embedded local Ray, or --address for a cluster)",
                       description="Validate a sweep spec, then train its dense references and every group on "
                                   "Ray Tune; re-running a finished or interrupted sweep skips finished runs.")
    p.add_argument("spec", help="sweep spec (YAML, see examples/)")
    _common(p)
    p.add_argument("--address", default=None, help="Ray address of an existing cluster (default: embedded)")
    p.add_argument("--storage", default=None, help="Tune/Train storage: local dir or pyarrow URI")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan, run nothing")
    p.add_argument("--name", default=None, help="run the spec under this sweep name instead of its `name`")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray Job",
                       description="Submit the whole sweep to a Ray cluster as one Ray Job (the driver runs on the "
                                   "cluster; this machine can disconnect).")
    p.add_argument("spec", help="sweep spec (YAML, see examples/)")
    p.add_argument("--address", required=True, help="Ray dashboard/Jobs address, e.g. http://HEAD:8265")
    _common(p)
    p.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    p.add_argument("--python", default=None, help="interpreter on the cluster (default: this one)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("resume", help="continue an interrupted sweep (finished trials are skipped)",
                       description="Continue an interrupted sweep from its work directory: finished runs are "
                                   "skipped, unfinished ones resume from their last checkpoint.")
    p.add_argument("sweep", help="sweep name, sweep directory or spec file")
    _common(p)
    p.add_argument("--address", default=None,
                   help="Ray address (default: the one the sweep ran with, else embedded local Ray)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="trials done/running/failed and the best run per group",
                       description="Runs finished/running/failed/killed and the best test ΔT per group, read "
                                   "from MLflow (a sweep name is enough with --tracking-uri or --workdir).")
    p.add_argument("sweep", help="sweep name, sweep directory or spec file")
    _common(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("quickstart", help="run examples/quickstart.yaml end to end and print the comparison",
                       description="Run examples/quickstart.yaml (CPU-sized, all six methods) end to end, print "
                                   "the comparison table and write its LaTeX and the sweep plot.")
    _common(p)
    p.add_argument("--spec", default=str(QUICKSTART), help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_quickstart)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow URI (default: the spec's, else $MLFLOW_TRACKING_URI, else "
                        "sqlite:///<workdir>/mlflow.db)")
    p.add_argument("--workdir", default=None,
                   help="work directory: sweep state, checkpoints, local MLflow store (default: ./.adapmtl)")


# -- shared validation -----------------------------------------------------------------------------------
def prepare(spec_path: str, args: argparse.Namespace, *, state: dict[str, Any] | None = None,
            check_root: bool = True, dry_run: bool = False) -> tuple[Any, Path, str, str | None]:
    """Load + validate everything; returns (plan, workdir, tracking URI, Ray address). No Ray, no compute."""
    from orchestrator import cluster, tracking
    from orchestrator import spec as specmod
    from orchestrator.plan import build_plan

    state = state or {}
    spec = specmod.load_spec(spec_path)
    if getattr(args, "name", None):  # a new name for a changed spec (see orchestrator.spec_change)
        spec = specmod.parse_spec({**spec.model_dump(mode="json"), "name": args.name}, "--name")
    plan = build_plan(spec)
    if not dry_run:  # --dry-run prints them with the plan
        for warning in plan.warnings:
            print(f"adapmtl: warning: {warning}", file=sys.stderr)
    if check_root:
        specmod.check_dataset_root(spec)
    workdir = Path(args.workdir or state.get("workdir") or spec.workdir or default_workdir()).expanduser().resolve()
    uri = tracking.resolve_tracking_uri(args.tracking_uri or state.get("tracking_uri") or spec.tracking.uri,
                                        workdir)
    address = cluster.resolve_address(getattr(args, "address", None) or state.get("address"), spec.ray.address)
    specmod.check_ray_address(address)
    if dry_run and uri.startswith("sqlite:///"):
        parent = Path(uri[len("sqlite:///"):]).parent
        if not os.access(parent, os.W_OK):
            raise specmod.SpecError(f"MLflow tracking URI {uri}: {parent} is not writable")
    else:
        specmod.check_tracking(uri)
    if address and address != "auto" and uri.startswith("sqlite:") and not _is_local(address):
        print(f"adapmtl: warning: a cluster at {address} with a local sqlite store ({uri}): trials on other "
              "nodes cannot write to it; use an MLflow server URI (--tracking-uri http://...)", file=sys.stderr)
    return plan, workdir, uri, address


def _is_local(address: str) -> bool:
    from orchestrator.spec import parse_host_port

    host, _ = parse_host_port(address, 6379)
    return host in ("127.0.0.1", "localhost", "::1")


def _execute(plan: Any, workdir: Path, uri: str, address: str | None, storage: str | None,
             summary: bool = True) -> int:
    from orchestrator.sweep import run_sweep, summary_table

    outcome = run_sweep(plan, workdir=workdir, tracking_uri=uri, address=address, storage=storage)
    from orchestrator.sweep_report import export_results

    export_results(outcome.name, uri, outcome.parent_run_id, SweepPaths(workdir, outcome.name).results)
    if summary:
        print(summary_table(outcome))
    print(f"sweep {outcome.name}: {outcome.finished} run(s) finished, {outcome.failed} failed in "
          f"{outcome.seconds:.0f} s; MLflow {uri} (experiment {outcome.name!r})", file=sys.stderr)
    if outcome.unreported:  # a planned group without a result is a failed sweep, whatever else finished
        print(f"adapmtl: error: {outcome.unreported_line()}", file=sys.stderr)
        return 1
    return 0


# -- verbs -----------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    plan, workdir, uri, address = prepare(args.spec, args, dry_run=args.dry_run)
    if args.dry_run:
        print(plan.describe())
        print(f"tracking: {uri}\nray: {address or 'embedded local'}\nworkdir: {workdir}")
        return 0
    return _execute(plan, workdir, uri, address, args.storage)


def cmd_resume(args: argparse.Namespace) -> int:
    spec_path, workdir = find_sweep(args.sweep, Path(args.workdir).resolve() if args.workdir else None)
    from orchestrator.spec import load_spec

    name = load_spec(spec_path).name
    state = SweepPaths(workdir, name).read_state()
    from orchestrator.relocate import state_moved

    moved = state_moved(state, Path(workdir))
    if moved:
        from orchestrator.tracking import StoreMovedError

        raise StoreMovedError(moved)
    if not args.workdir:
        args.workdir = state.get("workdir") or str(workdir)
    plan, workdir, uri, address = prepare(str(spec_path), args, state=state)
    return _execute(plan, workdir, uri, address, state.get("storage"))


def locate_sweep(sweep: str, workdir: str | None, tracking_uri: str | None) -> tuple[str, Path, dict[str, Any], str]:
    """``status``'s argument → (sweep name, workdir, state, tracking URI), without creating anything.

    A sweep directory, ``state.json`` or spec file is read as before; a bare name needs no local files at
    all: the store is ``--tracking-uri`` (or the state's, or ``$MLFLOW_TRACKING_URI``, or the one under
    ``--workdir``), and the sweep is its experiment, as for ``adapmtl table``.
    """
    from results import schema as S

    explicit_wd = Path(workdir).expanduser().resolve() if workdir else None
    spec_uri = None
    try:
        spec_path, wd = find_sweep(sweep, explicit_wd)
    except FileNotFoundError:
        name = sweep
        db = S.sqlite_path(tracking_uri) if tracking_uri else None
        wd = explicit_wd or (db.expanduser().resolve().parent if db is not None else default_workdir())
    else:
        from orchestrator.spec import load_spec

        spec = load_spec(spec_path)
        name, spec_uri = spec.name, spec.tracking.uri
    state = SweepPaths(wd, name).read_state()
    from orchestrator.relocate import state_moved

    moved = state_moved(state, Path(wd)) if not tracking_uri else None
    if moved:
        from orchestrator.tracking import StoreMovedError

        raise StoreMovedError(moved)
    uri = S.resolve_tracking_uri(tracking_uri or state.get("tracking_uri") or spec_uri, wd)
    db = S.sqlite_path(uri)
    if db is not None and not db.exists():
        raise FileNotFoundError(f"no MLflow store at {db} for sweep {name!r} (pass --tracking-uri URI or "
                                "--workdir DIR)")
    return name, wd, state, uri


def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator import tracking

    name, workdir, state, uri = locate_sweep(args.sweep, args.workdir, args.tracking_uri)
    tracking.check_reachable(uri)
    exp = tracking.client(uri).get_experiment_by_name(name)
    parent = state.get("parent_run_id")
    parent_run = None
    if exp is not None and not parent:
        parent_run = tracking.find_run(uri, exp.experiment_id, {"role": tracking.ROLE_SWEEP, "sweep": name})
        parent = parent_run.info.run_id if parent_run is not None else None
    if exp is None or not parent:
        if state or SweepPaths(workdir, name).spec.is_file():
            print(f"sweep {name}: not started")
            return 0
        raise FileNotFoundError(f"no sweep {name!r} in MLflow store {uri} (nor under {workdir / 'sweeps'})")
    if "done" in state:
        done = bool(state["done"])
    else:
        parent_run = parent_run or tracking.client(uri).get_run(parent)
        done = parent_run.info.status == "FINISHED"
    runs = tracking.children(uri, exp.experiment_id, parent)
    groups: dict[str, dict[str, Any]] = {}
    for r in runs:
        g = groups.setdefault(r.data.tags.get("group", "?"), {"FINISHED": 0, "RUNNING": 0, "FAILED": 0,
                                                              "KILLED": 0, "best": None})
        g[r.info.status] = g.get(r.info.status, 0) + 1
        if r.data.tags.get("best") == "true":
            g["best"] = r.data.metrics.get("test/delta_t")
    total = {k: sum(g[k] for g in groups.values()) for k in ("FINISHED", "RUNNING", "FAILED", "KILLED")}
    print(f"sweep {name}: {'done' if done else 'in progress or interrupted'} · "
          f"finished {total['FINISHED']} · running {total['RUNNING']} · failed {total['FAILED']} · "
          f"killed {total['KILLED']}")
    w = max([len(n) for n in groups] + [20])
    print(f"{'group':<{w}} {'fin':>4} {'run':>4} {'fail':>4} {'kill':>4} {'best test ΔT':>13}")
    for gname, g in sorted(groups.items()):
        best = f"{g['best']:+13.2f}" if isinstance(g["best"], float) else f"{'-':>13}"
        print(f"{gname:<{w}} {g['FINISHED']:>4} {g['RUNNING']:>4} {g['FAILED']:>4} {g['KILLED']:>4} {best}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from orchestrator import cluster, tracking
    from orchestrator import spec as specmod
    from orchestrator.plan import build_plan

    spec = specmod.load_spec(args.spec)
    build_plan(spec)  # the whole sweep is validated here, before anything is submitted
    workdir = Path(args.workdir or spec.workdir or default_workdir()).expanduser().resolve()
    uri = tracking.resolve_tracking_uri(args.tracking_uri or spec.tracking.uri, workdir)
    specmod.check_tracking(uri)
    specmod.check_tcp(args.address, 8265, "Ray Jobs address")
    address = args.address if "://" in args.address else f"http://{args.address}"
    job_id, client = cluster.submit(Path(args.spec).read_text(), address, tracking_uri=uri, workdir=str(workdir),
                                    python=args.python)
    print(job_id)
    print(f"submitted sweep {spec.name} as Ray Job {job_id} to {address}; follow with: "
          f"RAY_ADDRESS={address} ray job logs --follow {job_id}", file=sys.stderr)
    if not args.follow:
        return 0
    status = cluster.follow(client, job_id)
    print(f"job {job_id}: {status}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def cmd_quickstart(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    args.address = None
    plan, workdir, uri, address = prepare(args.spec, args)
    print(plan.describe(), file=sys.stderr)
    rc = _execute(plan, workdir, uri, address, None, summary=False)
    if rc:
        return rc
    _results(plan.spec.name, SweepPaths(workdir, plan.spec.name), uri)
    print(f"quickstart finished in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


def _results(name: str, paths: SweepPaths, uri: str) -> None:
    """The compact comparison for the terminal (≤ 100 columns); the full tables and figures were exported
    to the sweep's results directory by ``run`` (``orchestrator.sweep_report``): their paths are listed."""
    from results import render, tables
    from results.collect import collect

    try:
        table = tables.tasks(collect(name, tracking_uri=uri))
        sys.stdout.write(render.render(table, "terminal"))
    except ValueError as exc:
        print(f"(no comparison table: {exc})", file=sys.stderr)
    files = sorted(paths.results.glob("*")) if paths.results.exists() else []
    if files:
        print(f"full tables and figures in {paths.results}: {', '.join(f.name for f in files)}", file=sys.stderr)
