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
    p = sub.add_parser("run", help="run a sweep (embedded local Ray, or --address for a cluster)")
    p.add_argument("spec", help="sweep spec (YAML)")
    _common(p)
    p.add_argument("--address", default=None, help="Ray address of an existing cluster (default: embedded)")
    p.add_argument("--storage", default=None, help="Tune/Train storage: local dir or pyarrow URI")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan, run nothing")
    p.add_argument("--name", default=None, help="run the spec under this sweep name instead of its `name`")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray Job")
    p.add_argument("spec")
    p.add_argument("--address", required=True, help="Ray dashboard/Jobs address, e.g. http://HEAD:8265")
    _common(p)
    p.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    p.add_argument("--python", default=None, help="interpreter on the cluster (default: this one)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("resume", help="continue an interrupted sweep (finished trials are skipped)")
    p.add_argument("sweep", help="sweep name, sweep directory or spec file")
    _common(p)
    p.add_argument("--address", default=None)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="trials done/running/failed and the best run per group")
    p.add_argument("sweep", help="sweep name, sweep directory or spec file")
    _common(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("quickstart", help="run examples/quickstart.yaml end to end and print the comparison")
    _common(p)
    p.add_argument("--spec", default=str(QUICKSTART), help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_quickstart)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI or local)")
    p.add_argument("--workdir", default=None, help="work directory (default: ./.adapmtl)")


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


def _execute(plan: Any, workdir: Path, uri: str, address: str | None, storage: str | None) -> int:
    from orchestrator.sweep import run_sweep, summary_table

    outcome = run_sweep(plan, workdir=workdir, tracking_uri=uri, address=address, storage=storage)
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
    if not args.workdir:
        args.workdir = state.get("workdir") or str(workdir)
    plan, workdir, uri, address = prepare(str(spec_path), args, state=state)
    return _execute(plan, workdir, uri, address, state.get("storage"))


def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator import tracking
    from orchestrator.spec import load_spec

    spec_path, workdir = find_sweep(args.sweep, Path(args.workdir).resolve() if args.workdir else None)
    spec = load_spec(spec_path)
    state = SweepPaths(workdir, spec.name).read_state()
    uri = tracking.resolve_tracking_uri(args.tracking_uri or state.get("tracking_uri") or spec.tracking.uri,
                                        workdir)
    tracking.check_reachable(uri)
    exp = tracking.client(uri).get_experiment_by_name(spec.name)
    if exp is None or not state.get("parent_run_id"):
        print(f"sweep {spec.name}: not started")
        return 0
    runs = tracking.children(uri, exp.experiment_id, state["parent_run_id"])
    groups: dict[str, dict[str, Any]] = {}
    for r in runs:
        g = groups.setdefault(r.data.tags.get("group", "?"), {"FINISHED": 0, "RUNNING": 0, "FAILED": 0,
                                                              "KILLED": 0, "best": None})
        g[r.info.status] = g.get(r.info.status, 0) + 1
        if r.data.tags.get("best") == "true":
            g["best"] = r.data.metrics.get("test/delta_t")
    total = {k: sum(g[k] for g in groups.values()) for k in ("FINISHED", "RUNNING", "FAILED", "KILLED")}
    print(f"sweep {spec.name}: {'done' if state.get('done') else 'in progress or interrupted'} · "
          f"finished {total['FINISHED']} · running {total['RUNNING']} · failed {total['FAILED']} · "
          f"killed {total['KILLED']}")
    print(f"{'group':<44} {'fin':>4} {'run':>4} {'fail':>4} {'kill':>4} {'best test ΔT':>13}")
    for name, g in sorted(groups.items()):
        best = f"{g['best']:+13.2f}" if isinstance(g["best"], float) else f"{'-':>13}"
        print(f"{name:<44} {g['FINISHED']:>4} {g['RUNNING']:>4} {g['FAILED']:>4} {g['KILLED']:>4} {best}")
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
    rc = _execute(plan, workdir, uri, address, None)
    if rc:
        return rc
    _results(plan.spec.name, SweepPaths(workdir, plan.spec.name), uri)
    print(f"quickstart finished in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


def _results(name: str, paths: SweepPaths, uri: str) -> None:
    """The comparison table (+ LaTeX, + sweep plot) through the results verbs, when they are installed."""
    from orchestrator.cli import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if "table" not in verbs:
        print("(results not installed: `adapmtl table` is unavailable; runs are in MLflow)", file=sys.stderr)
        return
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the results verbs resolve the store like we do
    jobs = [["table", name, "--kind", "comparison", "--format", "markdown"],
            ["table", name, "--kind", "comparison", "--format", "latex", "--out", str(paths.output("comparison.tex"))]]
    if "plot" in verbs:
        jobs.append(["plot", name, "--kind", "sweep", "--out", str(paths.output("sweep.png"))])
    for argv in jobs:
        try:
            a = parser.parse_args(argv)
            a.func(a)
        except SystemExit:
            print(f"(could not run `adapmtl {' '.join(argv)}`)", file=sys.stderr)
        except Exception as exc:
            print(f"(`adapmtl {' '.join(argv[:3])}` failed: {exc})", file=sys.stderr)
