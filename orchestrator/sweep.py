"""A whole sweep: parent run, phase 1 (dense references), phase 2 (one Tune search per group), bookkeeping.

Resume design (robust to a driver killed at any point):

* every run is identified by its ``run_key``: a trial whose key already has a FINISHED run in MLflow is
  skipped; an unfinished one is reopened and its engine resumes from ``runs/<run_key>/checkpoint.pt``;
* a searched group whose Tune experiment exists and is not marked done in ``state.json`` is continued with
  ``Tuner.restore`` (keeps the searcher's state and trial budget, so resuming never over-samples);
* groups without a search (and the references) are deterministic: they are simply re-planned, and run_key
  skipping makes that idempotent.

``adapmtl run`` on a spec that already ran and ``adapmtl resume NAME`` therefore take the same path.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import tracking
from orchestrator.paths import SweepPaths
from orchestrator.plan import Group, Plan
from orchestrator.spec import SweepSpec, dump_spec
from orchestrator.trial import TrialContext, Unit

REFERENCES_PHASE = "references"
FIXED_PHASE = "fixed"


@dataclass
class SweepOutcome:
    name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    finished: int = 0
    failed: int = 0
    best: dict[str, dict[str, Any]] = field(default_factory=dict)  # group -> {run_id, objective, test_delta_t}
    seconds: float = 0.0
    paths: SweepPaths | None = None


def _log(msg: str) -> None:
    print(f"adapmtl: {msg}", file=sys.stderr, flush=True)


def run_sweep(plan: Plan, *, workdir: Path, tracking_uri: str, address: str | None = None,
              storage: str | None = None) -> SweepOutcome:
    """Run (or continue) the sweep of ``plan``; returns a summary. Validation must have happened already."""
    t0 = time.monotonic()
    spec = plan.spec
    paths = SweepPaths(workdir, spec.name).ensure()
    paths.spec.write_text(dump_spec(spec))
    exp_id = tracking.ensure_experiment(tracking_uri, spec.name)
    parent = tracking.get_or_create_parent(tracking_uri, exp_id, spec.name, _parent_params(plan))
    state = paths.read_state()
    state.update(name=spec.name, tracking_uri=tracking_uri, experiment_id=exp_id, parent_run_id=parent,
                 address=address, storage=storage, workdir=str(workdir))
    state.setdefault("done_groups", [])
    paths.write_state(state)
    _log(f"sweep {spec.name}: {plan.n_trials} trial(s); MLflow {tracking_uri} (experiment {exp_id}, "
         f"parent run {parent})")

    from orchestrator import cluster

    session = cluster.connect(address, spec.ray.num_cpus)
    outcome = SweepOutcome(spec.name, tracking_uri, exp_id, parent, paths=paths)
    git = tracking.git_sha()
    store = paths.storage(storage or spec.ray.storage)
    try:
        _log(f"Ray: {'embedded' if session.embedded else 'cluster'} at {session.address} "
             f"({session.num_cpus:g} CPU, {session.num_gpus:g} GPU)"
             + (f", temp dir {session.temp_dir}" if session.temp_dir else ""))
        base_ctx = dict(sweep=spec.name, tracking_uri=tracking_uri, experiment_id=exp_id, parent_run_id=parent,
                        runs_dir=str(paths.runs), storage=store, git_sha=git)
        references = _phase_references(plan, session, base_ctx)
        _phase_groups(plan, session, base_ctx, references, state, paths)
        outcome = _finish(plan, outcome)
    except BaseException as exc:
        c = tracking.client(tracking_uri)
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        c.set_tag(parent, "status", status.lower())
        c.set_tag(parent, "failure_reason", f"{type(exc).__name__}: {str(exc)[:500]}")
        c.set_terminated(parent, status=status)
        for r in tracking.children(tracking_uri, exp_id, parent):  # `resume` reopens and continues them
            if r.info.status == "RUNNING":
                tracking.mark_if_running(tracking_uri, r.info.run_id, "KILLED", f"sweep interrupted ({status.lower()})")
        raise
    finally:
        session.close()
    outcome.seconds = time.monotonic() - t0
    state = paths.read_state()
    state.update(done=True, finished=outcome.finished, failed=outcome.failed, seconds=round(outcome.seconds, 1))
    paths.write_state(state)
    return outcome


def _parent_params(plan: Plan) -> dict[str, Any]:
    s = plan.spec
    return {"dataset": s.dataset.name, "architectures": ",".join(s.architectures),
            "methods": ",".join(s.methods), "sparsities": ",".join(f"{x:g}" for x in s.sparsities),
            "seeds": ",".join(map(str, s.seeds)), "search.algorithm": s.search.algorithm,
            "search.scheduler": s.search.scheduler, "n_trials": plan.n_trials, "n_groups": len(plan.groups)}


# -- resources -------------------------------------------------------------------------------------------
def _per_trial(spec: SweepSpec, cpus: float) -> tuple[dict[str, float], float]:
    """Tune-level resources of one trial and the CPU it really occupies.

    On the TorchTrainer path the Tune trial is only a driver: it asks for 0.01 CPU (a whole CPU per driver
    deadlocks small machines: workers never get one), and the workers ask for their own.
    """
    r = spec.resources
    if r.uses_train:
        return {"CPU": 0.01}, 0.01 + r.workers_per_trial * cpus
    return {"CPU": cpus}, cpus


def _concurrency(spec: SweepSpec, session: Any, occupied: float, n: int) -> int:
    fit = max(1, math.floor((session.num_cpus + 1e-6) / occupied)) if occupied > 0 else n
    if spec.resources.gpus_per_worker and session.num_gpus:
        fit = min(fit, max(1, math.floor(session.num_gpus / (spec.resources.gpus_per_worker *
                                                              spec.resources.workers_per_trial))))
    mc = spec.search.max_concurrent or fit
    return max(1, min(mc, fit, n))


def _ctx(spec: SweepSpec, base: dict[str, Any], units: dict[str, Unit], references: dict[str, Any],
         cpus: float) -> TrialContext:
    r, s = spec.resources, spec.search
    return TrialContext(**base, units=units, references=references, metric=s.metric, mode=s.mode,
                        penalty=s.sparsity_penalty, tolerance=s.sparsity_tolerance,
                        workers=r.workers_per_trial, cpus=cpus, gpus=r.gpus_per_worker, use_train=r.uses_train,
                        max_failures=r.max_failures)


# -- phases ----------------------------------------------------------------------------------------------
def _phase_references(plan: Plan, session: Any, base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = plan.spec
    units = {r.id: Unit(id=r.id, role=tracking.ROLE_REFERENCE, base=r.config) for r in plan.references}
    cpus = spec.resources.cpus_per_worker
    if not spec.resources.uses_train:  # few references: give each the idle cores (threads, not identity)
        cpus = max(cpus, math.floor(session.num_cpus / max(1, len(units))))
    ctx = _ctx(spec, base, units, {}, cpus)
    _run_tuner(plan, REFERENCES_PHASE, ctx, list(units), session, searched=None)
    out: dict[str, dict[str, Any]] = {}
    for ref in plan.references:
        run = tracking.find_run(base["tracking_uri"], base["experiment_id"], {"run_key": ref.run_key})
        if run is None or run.info.status != "FINISHED":
            _log(f"reference {ref.id} did not finish; its groups are skipped")
            continue
        metrics = tracking.reference_metrics(run)
        zeros = _zero_references(metrics)
        if zeros:
            _log(f"reference {ref.id}: {', '.join(zeros)} = 0, so ΔT (a relative change) is undefined; its "
                 "groups are skipped (train the reference longer or drop that task)")
            continue
        metrics["final"] = str(Path(base["runs_dir"]) / ref.run_key / "final.pt")
        metrics["run_id"] = run.info.run_id
        out[ref.id] = metrics
    return out


def _zero_references(metrics: dict[str, Any]) -> list[str]:
    """Reference metrics that are exactly 0: ΔT's relative change is undefined for them (DESIGN §3.5)."""
    return sorted({f"{t}/{m}" for split in ("val", "test") for t, ms in metrics[split].items()
                   for m, v in ms.items() if v == 0})


def _phase_groups(plan: Plan, session: Any, base: dict[str, Any], references: dict[str, Any],
                  state: dict[str, Any], paths: SweepPaths) -> None:
    spec = plan.spec
    runnable = [g for g in plan.groups if g.reference_id in references]
    fixed = [g for g in runnable if not g.searched]
    searched = [g for g in runnable if g.searched]
    cpus = spec.resources.cpus_per_worker
    if fixed:
        units = {g.id: _unit(g, spec) for g in fixed}
        _run_tuner(plan, FIXED_PHASE, _ctx(spec, base, units, references, cpus), list(units), session,
                   searched=None)
        for g in fixed:
            _mark_best(base, g, spec.search.mode)
    for i, g in enumerate(searched, 1):
        if g.id in state.get("done_groups", []):
            _log(f"group {g.id} already done; skipped")
            continue
        ctx = _ctx(spec, base, {g.id: _unit(g, spec)}, references, cpus)
        _run_tuner(plan, g.id, ctx, [g.id], session, searched=g, label=f"{i}/{len(searched)} {g.id}")
        _mark_best(base, g, spec.search.mode)
        st = paths.read_state()
        st.setdefault("done_groups", []).append(g.id)
        paths.write_state(st)


def _unit(g: Group, spec: SweepSpec) -> Unit:
    return Unit(id=g.id, role=tracking.ROLE_TRIAL, base=g.base, reference_id=g.reference_id, label=g.label)


def _run_tuner(plan: Plan, name: str, ctx: TrialContext, unit_ids: list[str], session: Any, *,
               searched: Group | None, label: str | None = None) -> None:
    """One Tuner: a grid over units (references / fixed groups) or a search over one group's space."""
    from ray import tune

    from orchestrator import trial
    from orchestrator.progress import ProgressLine
    from search_spaces import to_tune

    # Ray's new console output prints an experiment banner even at verbose=0; the legacy reporter honours it
    # (our ProgressLine is the status line).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's own SIGINT handler turns Ctrl-C into a quiet early return of fit(); the sweep would then carry on
    # as if the phase had ended. Without it, Ctrl-C is a KeyboardInterrupt: parent run KILLED, exit 130.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    spec = plan.spec
    s = spec.search
    resources, occupied = _per_trial(spec, ctx.cpus)
    trainable = tune.with_resources(tune.with_parameters(trial.trainable, ctx=ctx), resources)
    n = searched.samples if searched else len(unit_ids)
    concurrency = _concurrency(spec, session, occupied, n)
    progress = ProgressLine(label or name, n, s.mode)
    run_config = tune.RunConfig(name=name, storage_path=ctx.storage, verbose=0, callbacks=[progress],
                                failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures))
    path = f"{ctx.storage}/{name}"
    if searched is None:
        tuner = tune.Tuner(trainable, param_space={"unit": tune.grid_search(unit_ids)},
                           tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency,
                                                       reuse_actors=True),
                           run_config=run_config)
    elif tune.Tuner.can_restore(path):
        _log(f"group {searched.id}: continuing its Tune experiment ({path})")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        space = {k: to_tune(v) for k, v in searched.space.items()}
        search_alg: Any = None
        if s.algorithm == "grid":
            space = {k: tune.grid_search(list(v.categories)) for k, v in space.items()}
        elif s.algorithm == "optuna":
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            optuna.logging.set_verbosity(optuna.logging.WARNING)

            search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=s.seed + searched.seed))
        scheduler = None
        if s.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            it = make_iterations(searched)
            scheduler = ASHAScheduler(time_attr="step", max_t=it, reduction_factor=s.reduction_factor,
                                      grace_period=s.grace_period or max(1, it // 4))
        tuner = tune.Tuner(trainable, param_space={"unit": searched.id, "params": space},
                           tune_config=tune.TuneConfig(metric="objective", mode=s.mode, search_alg=search_alg,
                                                       scheduler=scheduler, max_concurrent_trials=concurrency,
                                                       reuse_actors=True,  # no re-import of torch per trial (bench Q3)
                                                       num_samples=searched.samples if s.algorithm != "grid" else 1),
                           run_config=run_config)
    grid = tuner.fit()
    _close_runs(ctx, grid)


def make_iterations(g: Group) -> int:
    from orchestrator.plan import make_run_config

    return make_run_config(g.base).train.iterations


def _close_runs(ctx: TrialContext, grid: Any) -> None:
    """Runs a trial could not close itself: errored trials → FAILED, early-stopped ones → KILLED."""
    for result in grid:
        m = result.metrics or {}
        run_id = m.get("mlflow_run_id")
        if not run_id:
            continue
        if result.error is not None:
            text = str(result.error).strip().splitlines()
            tracking.mark_if_running(ctx.tracking_uri, run_id, "FAILED",
                                     f"{type(result.error).__name__}: {text[0] if text else ''}")
        elif not m.get("completed"):
            tracking.mark_if_running(ctx.tracking_uri, run_id, "KILLED",
                                     f"stopped early by the scheduler at step {m.get('step')}")


def _mark_best(base: dict[str, Any], g: Group, mode: str) -> None:
    """Tag the group's best finished run ``best=true`` (chosen on validation; its test metrics are final)."""
    uri, exp = base["tracking_uri"], base["experiment_id"]
    runs = [r for r in tracking.search(uri, exp, {"group": g.id, "sweep": base["sweep"]})
            if r.info.status == "FINISHED" and "val/objective" in r.data.metrics]
    if not runs:
        return
    def score(r: Any) -> float:
        return r.data.metrics["val/objective"]

    best = max(runs, key=score) if mode == "max" else min(runs, key=score)
    c = tracking.client(uri)
    for r in runs:
        c.set_tag(r.info.run_id, "best", "true" if r.info.run_id == best.info.run_id else "false")


def _finish(plan: Plan, outcome: SweepOutcome) -> SweepOutcome:
    """Close orphans (runs of trials a killed driver never resumed), summarise, end the parent run."""
    uri, exp, parent = outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id
    kids = tracking.children(uri, exp, parent)
    for r in kids:
        if r.info.status == "RUNNING":
            tracking.mark_if_running(uri, r.info.run_id, "KILLED", "orphaned: its trial was interrupted and "
                                     "not resumed (another config was sampled instead)")
    kids = tracking.children(uri, exp, parent)
    outcome.finished = sum(r.info.status == "FINISHED" for r in kids)
    outcome.failed = sum(r.info.status == "FAILED" for r in kids)
    for r in kids:
        if r.data.tags.get("best") == "true":
            outcome.best[r.data.tags.get("group", "?")] = {
                "run_id": r.info.run_id, "objective": r.data.metrics.get("val/objective"),
                "test_delta_t": r.data.metrics.get("test/delta_t"),
                "sparsity": r.data.metrics.get("final/sparsity/overall")}
    c = tracking.client(uri)
    c.set_tag(parent, "n_finished", str(outcome.finished))
    c.set_tag(parent, "n_failed", str(outcome.failed))
    c.set_tag(parent, "status", "finished")
    c.set_terminated(parent, status="FINISHED")
    return outcome


def summary_table(outcome: SweepOutcome) -> str:
    rows = [f"{'group':<44} {'val objective':>13} {'test ΔT':>9} {'sparsity':>9}"]
    for g, b in sorted(outcome.best.items()):
        def f(v: Any, fmt: str) -> str:
            return format(v, fmt) if isinstance(v, int | float) else "-"
        rows.append(f"{g:<44} {f(b['objective'], '+13.2f')} {f(b['test_delta_t'], '+9.2f')} "
                    f"{f(b['sparsity'], '9.3f')}")
    return "\n".join(rows)
