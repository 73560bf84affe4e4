"""A whole sweep: parent run, one Tuner for the references and every group, bookkeeping.

One Tuner (named ``sweep-<hash of what it runs>``) is fed by :class:`orchestrator.feeds.SweepSearcher`:
the dense references first, then each group once its reference's MLflow run is FINISHED, each group with
its own search. Trial actors are reused across the whole sweep. Searched groups under the ASHA scheduler
get a Tuner each afterwards, so that early stopping never compares trials of different methods.

Resume design (robust to a driver killed at any point):

* every run is identified by its ``run_key``: a trial whose key already has a FINISHED run in MLflow is
  skipped; an unfinished one is reopened and its engine resumes from ``runs/<run_key>/checkpoint.pt``;
* a Tune experiment that exists and is not marked done in ``state.json`` is continued with
  ``Tuner.restore`` (trials, the searcher's state — every group's study — and the budgets come back, so
  resuming never over-samples);
* a spec extended later (more seeds, sparsities) plans a Tuner of another name; its already-finished
  run_keys are skipped, so re-running is idempotent.

``adapmtl run`` on a spec that already ran and ``adapmtl resume NAME`` therefore take the same path.
"""

from __future__ import annotations

import hashlib
import json
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
from orchestrator.spec_change import MEANING_TAG
from orchestrator.trial import TrialContext, Unit
from search_spaces import describe, to_tune

#: Prefix of the Tune experiment that runs the references and every group (see orchestrator.feeds).
MAIN_EXPERIMENT = "sweep"


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
    #: planned references/groups without a reported run -> the reason MLflow recorded (exit code != 0)
    unreported: dict[str, str] = field(default_factory=dict)

    def unreported_line(self) -> str:
        """One line: how many planned units produced nothing, grouped by their recorded reason."""
        by_reason: dict[str, list[str]] = {}
        for unit, why in self.unreported.items():
            by_reason.setdefault(why, []).append(unit)
        parts = []
        for why, units in by_reason.items():
            shown = ", ".join(units[:3]) + (f" and {len(units) - 3} more" if len(units) > 3 else "")
            parts.append(f"{shown}: {why}")
        return (f"sweep {self.name}: {len(self.unreported)} planned reference(s)/group(s) produced no reported "
                f"run: {'; '.join(parts)}")


def _log(msg: str) -> None:
    print(f"adapmtl: {msg}", file=sys.stderr, flush=True)


def run_sweep(plan: Plan, *, workdir: Path, tracking_uri: str, address: str | None = None,
              storage: str | None = None) -> SweepOutcome:
    """Run (or continue) the sweep of ``plan``; returns a summary. Validation must have happened already.

    Order matters for failing loudly and leaving nothing half-done: the sweep's driver lock and the
    spec-change check come first (nothing is written before them), then Ray (a bounded connect), and only
    then the MLflow parent run, inside the ``try`` that marks it KILLED/FAILED on every failure path. With
    the embedded Ray the check and the experiment's creation run in a thread beside Ray's start (round 3,
    benchmarks/RESULTS.md Q3); a changed spec is then reported once Ray is up, and shut down again.
    """
    from orchestrator import cluster, signals, sweep_lock

    t0 = time.monotonic()
    spec = plan.spec
    paths = SweepPaths(workdir, spec.name).ensure()
    local_lock = sweep_lock.LocalLock(paths.root, spec.name)  # a second driver of this sweep stops here
    session = cluster_lock = None
    prep: Background | None = None
    try:
        with signals.sigterm_as_interrupt():
            if address is None or address == "local":
                # The embedded Ray's start (~5 s on the 2-core machine) must stay in the main thread (ray.init
                # installs signal handlers); the tracking set-up — the spec-change check, then the experiment:
                # for a fresh sqlite store ~5-8 s of MLflow import and schema migrations — runs beside it.
                # The parent run is still created only once Ray is up.
                prep = Background(_prepare_tracking, spec, paths, tracking_uri)
                session = cluster.connect(address, spec.ray.num_cpus, dashboard=spec.ray.dashboard)
                meaning, exp_id = prep.result()  # its error (a changed spec, a moved store) surfaces here
            else:  # a cluster: connect (a bounded probe) only after the check, and before anything is written
                meaning = check_unchanged(spec, paths, tracking_uri)
                session = cluster.connect(address, spec.ray.num_cpus, dashboard=spec.ray.dashboard)
                paths.spec.write_text(dump_spec(spec))
                exp_id = tracking.ensure_experiment(tracking_uri, spec.name)
            signals.install()  # ray.init replaced our SIGTERM handler with its own
            if not session.embedded:
                cluster_lock = sweep_lock.ClusterLock(spec.name)
            return _run(plan, paths, session, meaning, exp_id, tracking_uri=tracking_uri, address=address,
                        storage=storage, workdir=workdir, t0=t0)
    finally:
        if prep is not None:
            prep.join()
        if cluster_lock is not None:
            cluster_lock.release()
        if session is not None:
            session.close()
        local_lock.release()


class Background:
    """``fn(*args)`` in a thread; ``result()`` joins it and returns its value or raises its exception."""

    def __init__(self, fn: Any, *args: Any) -> None:
        import threading

        self._value: Any = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._value = fn(*args)
            except BaseException as exc:  # handed to the main thread by result()
                self._error = exc

        self._thread = threading.Thread(target=target, name=f"adapmtl-{getattr(fn, '__name__', 'prep')}",
                                        daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def _prepare_tracking(spec: SweepSpec, paths: SweepPaths, tracking_uri: str) -> tuple[str, str]:
    """The spec-change check, then the stored spec and the experiment: (meaning, experiment id)."""
    meaning = check_unchanged(spec, paths, tracking_uri)
    paths.spec.write_text(dump_spec(spec))
    return meaning, tracking.ensure_experiment(tracking_uri, spec.name)


def _run(plan: Plan, paths: SweepPaths, session: Any, meaning: str, exp_id: str, *, tracking_uri: str,
         address: str | None, storage: str | None, workdir: Path, t0: float) -> SweepOutcome:
    spec = plan.spec
    parent = tracking.get_or_create_parent(tracking_uri, exp_id, spec.name, _parent_params(plan))
    c = tracking.client(tracking_uri)
    try:
        from orchestrator.sweep_report import log_spec

        log_spec(tracking_uri, parent, paths.spec)  # the MLflow UI shows what ran (orchestrator.sweep_report)
        if len(meaning) <= _MEANING_TAG_MAX:
            c.set_tag(parent, MEANING_TAG, meaning)
        state = paths.read_state()
        state.update(name=spec.name, tracking_uri=tracking_uri, experiment_id=exp_id, parent_run_id=parent,
                     address=address, storage=storage, workdir=str(workdir))
        state.setdefault("done_groups", [])
        paths.write_state(state)
        _log(f"sweep {spec.name}: {plan.n_trials} trial(s); MLflow {tracking_uri} (experiment {exp_id}, "
             f"parent run {parent})")
        outcome = SweepOutcome(spec.name, tracking_uri, exp_id, parent, paths=paths)
        store = paths.storage(storage or spec.ray.storage)
        _log(f"Ray: {'embedded' if session.embedded else 'cluster'} at {session.address} "
             f"({session.num_cpus:g} CPU, {session.num_gpus:g} GPU)"
             + (f", temp dir {session.temp_dir}" if session.temp_dir else ""))
        base_ctx = dict(sweep=spec.name, tracking_uri=tracking_uri, experiment_id=exp_id, parent_run_id=parent,
                        runs_dir=str(paths.runs), storage=store, git_sha=tracking.git_sha())
        later = _phase_main(plan, session, base_ctx, state, paths)
        _phase_scheduled(plan, session, base_ctx, later, paths.read_state(), paths)
        outcome = _finish(plan, outcome)
    except BaseException as exc:
        from orchestrator.signals import is_sigterm

        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        text = str(exc).strip().splitlines()
        c.set_tag(parent, "status", status.lower())
        c.set_tag(parent, "failure_reason", f"{type(exc).__name__}: {(text[0] if text else '')[:500]}")
        c.set_terminated(parent, status=status)
        for r in tracking.children(tracking_uri, exp_id, parent):  # `resume` reopens and continues them
            if r.info.status == "RUNNING":
                tracking.mark_if_running(tracking_uri, r.info.run_id, "KILLED", f"sweep interrupted ({status.lower()})")
        if isinstance(exc, KeyboardInterrupt):
            how = "terminated (SIGTERM)" if is_sigterm(exc) else "interrupted"
            exc.args = (f"sweep {spec.name} {how}: its runs are marked KILLED; `adapmtl resume {spec.name}` "
                        "continues it",)
        raise
    outcome.seconds = time.monotonic() - t0
    state = paths.read_state()
    state.update(done=not outcome.unreported, finished=outcome.finished, failed=outcome.failed,
                 seconds=round(outcome.seconds, 1))
    paths.write_state(state)
    return outcome


#: The MLflow tag value limit is 8000 characters; a longer meaning is only compared through spec.yaml.
_MEANING_TAG_MAX = 7500


def check_unchanged(spec: SweepSpec, paths: SweepPaths, tracking_uri: str) -> str:
    """Refuse a spec whose meaning differs from the one this sweep name already ran with; returns the
    spec's meaning (JSON). Compared against ``sweeps/<name>/spec.yaml``, or else the parent run's
    ``spec_meaning`` tag (another work dir sharing the tracking store)."""
    from orchestrator.spec import SpecError, load_spec
    from orchestrator.spec_change import differences, meaning, meaning_json

    new = meaning(spec)
    old: dict[str, Any] | None = None
    where = str(paths.spec)
    if paths.spec.is_file():
        try:
            old = meaning(load_spec(paths.spec))
        except SpecError as exc:
            raise SpecError(f"sweep {spec.name}: its stored spec cannot be read to compare ({exc}); give this "
                            "spec a new name (`name:` or --name)") from None
    else:
        exp = tracking.client(tracking_uri).get_experiment_by_name(spec.name)
        run = tracking.find_run(tracking_uri, exp.experiment_id, {"role": tracking.ROLE_SWEEP, "sweep": spec.name}) \
            if exp is not None else None
        if run is not None and run.data.tags.get(MEANING_TAG):
            old, where = json.loads(run.data.tags[MEANING_TAG]), f"MLflow parent run {run.info.run_id}"
    diffs = differences(old, new) if old is not None else []
    if diffs:
        raise SpecError(f"sweep {spec.name} already exists with another meaning ({where}): {'; '.join(diffs)}. "
                        "Its runs would be merged with these: give this spec a new name (`name:` or --name), "
                        "or restore those values (adding seeds, sparsities, architectures or methods is fine)")
    return meaning_json(spec)


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


def _ctx(spec: SweepSpec, base: dict[str, Any], units: dict[str, Unit], cpus: float) -> TrialContext:
    r, s = spec.resources, spec.search
    return TrialContext(**base, units=units, metric=s.metric, mode=s.mode,
                        penalty=s.sparsity_penalty, tolerance=s.sparsity_tolerance,
                        workers=r.workers_per_trial, cpus=cpus, gpus=r.gpus_per_worker, use_train=r.uses_train,
                        max_failures=r.max_failures)


# -- the sweep's Tuners ------------------------------------------------------------------------------
def _reference_cpus(spec: SweepSpec, session: Any, n_references: int) -> float:
    """CPUs (= intra-op threads) of a reference trial.

    Its groups wait for it, so a lone reference may use idle cores as threads, but only where that pays:
    on the quickstart model two threads instead of one gained <= 10 % on an idle 2-core machine and were
    several times *slower* on a loaded one (benchmarks/RESULTS.md Q5), and a reference sized differently
    from the trials cannot hand its actor on to them (``reuse_actors``). So: >= 4 cores per reference.
    """
    cpus = spec.resources.cpus_per_worker
    if spec.resources.uses_train or n_references == 0:
        return cpus
    share = math.floor(session.num_cpus / n_references)
    return float(share) if share >= 4 * cpus else cpus


def _units(plan: Plan, groups: list[Group], ref_cpus: float) -> dict[str, Unit]:
    units = {r.id: Unit(id=r.id, role=tracking.ROLE_REFERENCE, base=r.config, cpus=ref_cpus)
             for r in plan.references}
    for g in groups:
        units[g.id] = Unit(id=g.id, role=tracking.ROLE_TRIAL, base=g.base, reference_id=g.reference_id,
                           reference_key=plan.reference(g).run_key, label=g.label, entry=g.entry,
                           budget_trials=g.budget, budget_searched=tuple(sorted(g.space)))
    return units


def _phase_main(plan: Plan, session: Any, base: dict[str, Any], state: dict[str, Any],
                paths: SweepPaths) -> list[Group]:
    """References and every group in one Tuner (see ``orchestrator.feeds``); returns the groups left for
    their own Tuners: searched groups under an early-stopping scheduler, which must not compare trials of
    different methods."""
    from orchestrator.feeds import SweepSearcher, make_feed

    spec = plan.spec
    s = spec.search
    own_tuner = [g for g in plan.groups if g.searched and s.scheduler != "none"]
    inline = [g for g in plan.groups if g not in own_tuner]
    base_name = _main_name(plan, inline)
    attempt = int(state.get("main_attempts", {}).get(base_name, 0))
    name = base_name if attempt == 0 else f"{base_name}-r{attempt}"
    if name in state.get("done_groups", []):
        return own_tuner
    ref_cpus = _reference_cpus(spec, session, len(plan.references))
    ctx = _ctx(spec, base, _units(plan, plan.groups, ref_cpus), spec.resources.cpus_per_worker)
    feeds = [make_feed(g.id, g.reference_id, {k: to_tune(v) for k, v in g.space.items()},
                       algorithm=s.algorithm, samples=g.samples, seed=s.seed + g.seed, mode=s.mode)
             for g in inline]
    searcher = SweepSearcher([r.id for r in plan.references], feeds, _reference_check(plan, base), mode=s.mode)
    _run_tuner(plan, name, ctx, session, searcher=searcher, total=searcher.total, label=spec.name)
    for g in inline:
        _mark_best(base, g, s.mode)
    retry = _retryable_references(plan, base)
    if retry:
        _reference_check(plan, base).withdraw_dropped(retry)
        # A finished Tune experiment cannot be asked for more trials, so the next run plans a new one; its
        # finished run_keys are skipped and the reference's unfinished run is reopened and resumed.
        st = paths.read_state()
        st.setdefault("main_attempts", {})[base_name] = attempt + 1
        paths.write_state(st)
        _log(f"reference(s) {', '.join(retry)} did not finish (their groups did not run); "
             f"`adapmtl resume {spec.name}` retrains them and runs their groups")
    else:
        _mark_done(paths, name)
    return own_tuner


def _reference_check(plan: Plan, base: dict[str, Any]) -> Any:
    from orchestrator.feeds import ReferenceCheck

    return ReferenceCheck(base["tracking_uri"], base["experiment_id"], {r.id: r.run_key for r in plan.references},
                          parent_run_id=base.get("parent_run_id"))


def _retryable_references(plan: Plan, base: dict[str, Any]) -> list[str]:
    """References without a FINISHED run that a new attempt could still finish (not a diverged one)."""
    out = []
    for ref in plan.references:
        run = tracking.find_run(base["tracking_uri"], base["experiment_id"], {"run_key": ref.run_key})
        if run is None or not tracking.is_final(run):
            out.append(ref.id)
    return out


def _main_name(plan: Plan, groups: list[Group]) -> str:
    """The main experiment's name, keyed by what it runs: a spec extended later (more seeds, sparsities)
    gets a new experiment, whose already-finished run_keys are skipped; the same spec restores the old one."""
    s = plan.spec.search
    what = [sorted(r.run_key for r in plan.references), s.algorithm, s.seed,
            [(g.id, g.samples, g.base, sorted((k, describe(v)) for k, v in g.space.items())) for g in groups]]
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{MAIN_EXPERIMENT}-{digest}"


def _phase_scheduled(plan: Plan, session: Any, base: dict[str, Any], groups: list[Group],
                     state: dict[str, Any], paths: SweepPaths) -> None:
    """Searched groups with an early-stopping scheduler: one Tuner each (after their references ran)."""
    spec = plan.spec
    for i, g in enumerate(groups, 1):
        if g.id in state.get("done_groups", []):
            _log(f"group {g.id} already done; skipped")
            continue
        why = _reference_check(plan, base).problem(g.reference_id, error=False)
        if why is not None:  # the same rule as the one Tuner's searcher applies (finished, no zero metric)
            _log(f"group {g.id}: its reference {g.reference_id} {why}; skipped")
            continue
        ctx = _ctx(spec, base, _units(plan, [g], spec.resources.cpus_per_worker), spec.resources.cpus_per_worker)
        _run_tuner(plan, g.id, ctx, session, group=g, total=g.samples, label=f"{i}/{len(groups)} {g.id}")
        _mark_best(base, g, spec.search.mode)
        _mark_done(paths, g.id)


def _mark_done(paths: SweepPaths, name: str) -> None:
    st = paths.read_state()
    st.setdefault("done_groups", []).append(name)
    paths.write_state(st)


def _run_tuner(plan: Plan, name: str, ctx: TrialContext, session: Any, *, total: int,
               searcher: Any = None, group: Group | None = None, label: str | None = None) -> None:
    """One Tuner: the whole sweep fed by ``searcher``, or one ``group`` searched under the ASHA scheduler.

    A Tune experiment that already exists under the storage (a killed driver) is continued with
    ``Tuner.restore``: trials, searcher state and budget come back, so resuming never over-samples.
    """
    from ray import tune

    from orchestrator import trial
    from orchestrator.progress import ProgressLine

    # Ray's new console output prints an experiment banner even at verbose=0; the legacy reporter honours it
    # (our ProgressLine is the status line).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's own SIGINT handler turns Ctrl-C into a quiet early return of fit(); the sweep would then carry on
    # as if the phase had ended. Without it, Ctrl-C is a KeyboardInterrupt: parent run KILLED, exit 130.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # A retried worker failure is one line from FailureLines, not Tune's traceback (still in error.txt).
    from orchestrator.failures import PRINT_ERRORS_ENV, FailureLines

    os.environ.setdefault(PRINT_ERRORS_ENV, "0")
    spec = plan.spec
    s = spec.search
    resources, occupied = _per_trial(spec, ctx.cpus)
    unit_cpus = {u.id: u.cpus for u in ctx.units.values() if u.cpus is not None and u.cpus != ctx.cpus}
    trainable = tune.with_parameters(trial.trainable, ctx=ctx)
    if unit_cpus:  # a reference with more threads than the trials (see _reference_cpus)
        def per_unit(config: dict[str, Any]) -> dict[str, float]:
            return {"CPU": unit_cpus.get(config.get("unit", ""), resources["CPU"])}
        trainable = tune.with_resources(trainable, per_unit)
    else:
        trainable = tune.with_resources(trainable, resources)
    concurrency = _concurrency(spec, session, occupied, total)
    progress = ProgressLine(label or name, total, s.mode)
    run_config = tune.RunConfig(name=name, storage_path=ctx.storage, verbose=0, callbacks=[progress, FailureLines()],
                                failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures))
    path = f"{ctx.storage}/{name}"
    if tune.Tuner.can_restore(path):
        _log(f"{'sweep' if group is None else f'group {group.id}'}: continuing its Tune experiment ({path})")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    elif group is None:
        # reuse_actors: trial actors outlive their trials, so torch & co. are imported once per slot (bench Q3)
        tuner = tune.Tuner(trainable, param_space={},
                           tune_config=tune.TuneConfig(search_alg=searcher, num_samples=total,
                                                       max_concurrent_trials=concurrency, reuse_actors=True),
                           run_config=run_config)
    else:
        from ray.tune.schedulers import ASHAScheduler

        space = {k: to_tune(v) for k, v in group.space.items()}
        search_alg: Any = None
        if s.algorithm == "grid":
            space = {k: tune.grid_search(list(v.categories)) for k, v in space.items()}
        elif s.algorithm == "optuna":
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=s.seed + group.seed))
        it = make_iterations(group)
        # max_t one past the run's length: ASHA stops a trial whose step reaches max_t, and the last
        # validation reports step == iterations *before* the trial's test pass and final report.
        scheduler = ASHAScheduler(time_attr="step", max_t=it + 1, reduction_factor=s.reduction_factor,
                                  grace_period=s.grace_period or max(1, it // 4))
        tuner = tune.Tuner(trainable, param_space={"unit": group.id, "params": space},
                           tune_config=tune.TuneConfig(metric="objective", mode=s.mode, search_alg=search_alg,
                                                       scheduler=scheduler, max_concurrent_trials=concurrency,
                                                       reuse_actors=True,
                                                       num_samples=group.samples if s.algorithm != "grid" else 1),
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
            # The engine may have closed the run itself (KILLED, "interrupted") when Tune stopped it; say why.
            reason = f"stopped early by the scheduler at step {m.get('step')}"
            if not tracking.mark_if_running(ctx.tracking_uri, run_id, "KILLED", reason):
                run = tracking.client(ctx.tracking_uri).get_run(run_id)
                if run.info.status == "KILLED":
                    tracking.client(ctx.tracking_uri).set_tag(run_id, "failure_reason", reason)


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
    from orchestrator.sweep_report import log_summary

    log_summary(uri, parent, kids, outcome.best)  # counts and best ΔT per group as parent-run metrics
    outcome.unreported = _unreported(plan, uri, exp, kids)
    c = tracking.client(uri)
    c.set_tag(parent, "n_finished", str(outcome.finished))
    c.set_tag(parent, "n_failed", str(outcome.failed))
    if outcome.unreported:  # something planned has no result: the sweep did not do its job
        c.set_tag(parent, "n_unreported", str(len(outcome.unreported)))
        c.set_tag(parent, "failure_reason", outcome.unreported_line()[:5000])
        c.set_tag(parent, "status", "failed")
        c.set_terminated(parent, status="FAILED")
        return outcome
    for key in ("n_unreported", "failure_reason"):
        if key in c.get_run(parent).data.tags:
            c.delete_tag(parent, key)
    c.set_tag(parent, "status", "finished")
    c.set_terminated(parent, status="FINISHED")
    return outcome


def _unreported(plan: Plan, uri: str, exp: str, kids: list) -> dict[str, str]:
    """Planned references without a finished run and groups without a reported (``best``) run, each with
    the reason MLflow recorded: its reference's problem, its trials' failure reason, or that none ran."""
    from orchestrator.feeds import ReferenceCheck

    check = ReferenceCheck(uri, exp, {r.id: r.run_key for r in plan.references})
    by_key = {r.data.tags.get("run_key"): r for r in kids}
    out: dict[str, str] = {}
    ref_problem: dict[str, str] = {}
    for ref in plan.references:
        why = check.problem(ref.id, error=False)
        if why is None:
            continue
        ref_problem[ref.id] = why
        run = by_key.get(ref.run_key)
        if run is None or run.info.status != "FINISHED":
            out[ref.id] = why
    by_group: dict[str, list] = {}
    for r in kids:
        by_group.setdefault(r.data.tags.get("group", ""), []).append(r)
    for g in plan.groups:
        runs = by_group.get(g.id, [])
        if any(r.data.tags.get("best") == "true" for r in runs):
            continue
        if g.reference_id in ref_problem:
            out[g.id] = f"its reference {g.reference_id} {ref_problem[g.reference_id]}"
        elif runs:
            reasons = [r.data.tags["failure_reason"].strip().splitlines()[0][:300] for r in runs
                       if r.data.tags.get("failure_reason", "").strip()]
            out[g.id] = f"none of its {len(runs)} trial(s) finished ({reasons[0] if reasons else 'no reason recorded'})"
        else:
            out[g.id] = "no trial ran"
    return out


def summary_table(outcome: SweepOutcome) -> str:
    w = max([len(g) for g in outcome.best] + [20])
    rows = [f"{'group':<{w}} {'val objective':>13} {'test ΔT':>9} {'sparsity':>9}"]
    for g, b in sorted(outcome.best.items()):
        def f(v: Any, fmt: str) -> str:
            return format(v, fmt) if isinstance(v, int | float) else "-"
        rows.append(f"{g:<{w}} {f(b['objective'], '+13.2f')} {f(b['test_delta_t'], '+9.2f')} "
                    f"{f(b['sparsity'], '9.3f')}")
    return "\n".join(rows)
