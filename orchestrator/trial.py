"""What runs inside one Tune trial: build the RunConfig, claim its MLflow run by ``run_key``, train.

Two execution paths, one contract (metrics forwarded to Tune at every validation, MLflow written by rank 0):

* **direct** (single-worker CPU trials): the engine loop runs inside the Tune function trainable. Measured
  on a 2-core machine, a TorchTrainer costs tens of seconds of start-up per trial (controller + worker group)
  for no benefit when there is one CPU worker; the direct path keeps Ray's scheduling, retries and
  resources.
* **train** (multi-worker or GPU trials): the Tune trainable is a small driver that builds a
  ``TorchTrainer`` and calls ``fit()``, with ``ray.tune.integration.ray_train.TuneReportCallback`` forwarding
  the workers' ``ray.train.report`` metrics to Tune. This is the Ray Train V2 composition (Ray >= 2.50 has
  V2 on by default; ``Tuner(TorchTrainer)`` is rejected there). Killed workers are restarted by Train's
  ``FailureConfig(max_failures)`` and resume from the engine checkpoint of the per-run work dir (and from
  the last Ray Train checkpoint when that dir is not shared between nodes).

Identity: the run directory and the MLflow run are both keyed by ``RunConfig.run_key()``, so a retried or
resumed trial continues the same run and a finished one is skipped, never duplicated.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import tracking

#: Fault injection for tests: SIGKILL the training process at the first validation at or after this step
#: (once per sweep), to prove that a killed worker resumes from its checkpoint.
FAULT_ENV = "ADAPMTL_FAULT_KILL_AT_STEP"
FAULT_MARKER = "fault_injected"
WORST = 1e9


@dataclass(frozen=True)
class Unit:
    """What a trial trains: a reference or a group's base config (searched params are added per trial)."""

    id: str
    role: str  # "reference" | "trial"
    base: dict[str, Any]
    reference_id: str | None = None
    reference_key: str | None = None  # run_key of the reference: its MLflow run holds the ΔT reference
    label: str | None = None
    cpus: float | None = None  # intra-op threads when not the context's (a reference with idle cores)
    entry: str | None = None  # the spec's method key ("adapmtl", "adapmtl@no_lambda")
    budget_trials: int = 1  # the group's tuning budget: trials it may run ...
    budget_searched: tuple[str, ...] = ()  # ... over these parameters (none: a fixed group)


@dataclass
class TrialContext:
    """Everything a trial needs, shipped once per Tuner via ``tune.with_parameters`` (picklable)."""

    sweep: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    runs_dir: str
    storage: str
    git_sha: str
    units: dict[str, Unit]
    metric: str = "val/delta_t"
    mode: str = "max"
    penalty: float = 1.0
    tolerance: float = 0.005
    workers: int = 1
    cpus: float = 1.0
    gpus: float = 0.0
    use_train: bool = False
    max_failures: int = 1


# -- objective -----------------------------------------------------------------------------------------
def objective(flat: Mapping[str, float], target: float | None, ctx: TrialContext) -> float | None:
    """``metric`` penalised by the sparsity shortfall in percentage points (see ``SearchSpec``)."""
    base = flat.get(ctx.metric)
    if base is None or not math.isfinite(float(base)):
        return None
    shortfall = 0.0
    if target is not None:
        achieved = float(flat.get("sparsity/overall", 0.0))
        shortfall = max(0.0, target - achieved - ctx.tolerance) * 100.0
    penalty = ctx.penalty * shortfall
    return float(base) - penalty if ctx.mode == "max" else float(base) + penalty


def worst(ctx: TrialContext) -> float:
    return -WORST if ctx.mode == "max" else WORST


def _tune_metrics(step: int, flat: Mapping[str, float], obj: float | None, run_id: str, key: str,
                  ctx: TrialContext, needs_objective: bool) -> dict[str, Any]:
    m: dict[str, Any] = {k: float(v) for k, v in flat.items()}
    m.update(step=int(step), mlflow_run_id=run_id, run_key=key)
    if obj is not None:
        m["objective"] = obj
    elif needs_objective:
        m["objective"] = worst(ctx)
    return m


def _final_metrics(result: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for t, ms in (result.test or {}).items():
        for k, v in ms.items():
            out[f"test/{t}/{k}"] = float(v)
    if result.test_delta_t:
        out["test/delta_t"] = float(result.test_delta_t["overall"])
    for k, v in (result.sparsity or {}).items():
        out[f"final/sparsity/{k}"] = float(v)
    return out


# -- helpers -------------------------------------------------------------------------------------------
def build_config(unit: Unit, params: Mapping[str, Any]) -> Any:
    from trainers.config import RunConfig

    kwargs = copy.deepcopy(unit.base)
    kwargs["method_params"] = {**kwargs.get("method_params", {}), **dict(params)}
    return RunConfig(**kwargs)


def run_tags(cfg: Any, unit: Unit, ctx: TrialContext, trial_id: str) -> dict[str, Any]:
    tasks = cfg.data.task_list()
    tags: dict[str, Any] = {
        "sweep": ctx.sweep, "method": cfg.method, "arch": cfg.model.arch, "dataset": cfg.data.name,
        "target_sparsity": cfg.target_sparsity if cfg.target_sparsity is not None else 0.0, "seed": cfg.seed,
        "role": unit.role, "trial_id": trial_id, "git_sha": ctx.git_sha, "group": unit.id,
        "tasks": ",".join(tasks),
    }
    directions = tracking.directions_tag(cfg.data.name, tasks)
    if directions:
        tags["directions"] = directions
    if unit.label:
        tags["variant"] = unit.label
    if unit.role == tracking.ROLE_TRIAL:
        tags["budget_trials"] = unit.budget_trials
        tags["budget_searched"] = ",".join(unit.budget_searched) or "none"
        if unit.entry:
            tags["entry"] = unit.entry
    tags["conventions"] = cfg.conventions().tag()
    return tags


@contextlib.contextmanager
def key_lock(path: Path) -> Iterator[None]:
    """One trial per run_key at a time (two samples of one config wait, then the second is skipped)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def maybe_inject_fault(step: int, workdir: Path) -> None:
    at = os.environ.get(FAULT_ENV)
    if not at or step < int(at):
        return
    marker = workdir.parent / FAULT_MARKER  # once per sweep (the runs dir), whichever run gets there first
    if marker.exists():
        return
    marker.write_text(str(step))
    os.kill(os.getpid(), signal.SIGKILL)


def _existing_metrics(run: Any, cfg: Any, ctx: TrialContext, needs_objective: bool) -> dict[str, Any]:
    """Tune metrics of a run that is already final in MLflow (the trial is skipped, not re-trained)."""
    m = run.data.metrics
    flat = {k: v for k, v in m.items() if k.startswith(("val/", "test/", "sparsity/", "final/sparsity/"))}
    failed = run.info.status != "FINISHED"
    obj = None if failed else objective(flat, cfg.target_sparsity, ctx)
    out = _tune_metrics(cfg.train.iterations, flat, obj, run.info.run_id, cfg.run_key(), ctx, needs_objective)
    out.update(skipped=1, completed=1, trial_failed=int(failed))
    return out


class ReferenceUnavailable(RuntimeError):
    """The trial's reference cannot serve (it failed, was dropped, or has a zero metric)."""


#: Seconds between two looks at the reference while a trial waits for it (see ``wait_for_reference``).
REFERENCE_POLL_S = 0.5
#: Seconds a reference's run may stay FAILED/KILLED (not reopened by a retry or a resumed trial, and not
#: announced as dropped) before a waiting trial gives up on it.
REFERENCE_GRACE_S = 300.0


def wait_for_reference(ctx: TrialContext, unit: Unit, poll_s: float | None = None) -> Any:
    """The reference's FINISHED MLflow run, waiting while it still trains (an early trial of a warm slot,
    ``orchestrator.feeds``); raises :class:`ReferenceUnavailable` as soon as it cannot serve.

    It cannot serve when it finished with a metric equal to 0 (the searcher's rule), or when the searcher
    announced on the parent run that it dropped it (its trial failed with no retries left, or died before its
    run recorded anything). A FAILED/KILLED run alone is not final: on ``resume`` the reference's run is the
    one an earlier attempt left FAILED/KILLED until its retrained trial reopens it, and Tune may retry a
    failed reference. It counts as final only if it stays so for ``REFERENCE_GRACE_S`` (a fallback should
    the announcement itself fail).
    """
    from orchestrator.feeds import ReferenceCheck, dropped_tag

    assert unit.reference_id is not None and unit.reference_key is not None
    check = ReferenceCheck(ctx.tracking_uri, ctx.experiment_id, {unit.reference_id: unit.reference_key})
    tag = dropped_tag(unit.reference_id)
    c = tracking.client(ctx.tracking_uri)
    ended_since: float | None = None  # when the run was first seen FAILED/KILLED (since last RUNNING)
    while True:
        run = tracking.find_run(ctx.tracking_uri, ctx.experiment_id, {"run_key": unit.reference_key})
        status = run.info.status if run is not None else None
        if status == "FINISHED":
            why = check.problem(unit.reference_id, error=False)
            if why is None:
                return run
            raise ReferenceUnavailable(f"reference {unit.reference_id} {why}")
        if status in ("FAILED", "KILLED"):
            ended_since = ended_since if ended_since is not None else time.monotonic()
            if time.monotonic() - ended_since > REFERENCE_GRACE_S:
                why = check.problem(unit.reference_id, error=True) or f"run is {status}"
                raise ReferenceUnavailable(f"reference {unit.reference_id} {why}")
        else:
            ended_since = None
        dropped = c.get_run(ctx.parent_run_id).data.tags.get(tag)
        if dropped:
            raise ReferenceUnavailable(f"reference {unit.reference_id}: {dropped}")
        time.sleep(REFERENCE_POLL_S if poll_s is None else poll_s)


def reference_of(ctx: TrialContext, unit: Unit) -> dict[str, Any] | None:
    """The ΔT reference of a trial: the last validation and the test metrics of its reference's MLflow run.

    Read by the trial itself (the sweep's searcher releases a group once that run is FINISHED, or issues an
    early trial that waits for it here), so the one Tuner that runs references and groups needs no driver
    round-trip between them.
    """
    if not unit.reference_key:
        return None
    run = wait_for_reference(ctx, unit)
    metrics: dict[str, Any] = tracking.reference_metrics(run)
    metrics["final"] = str(Path(ctx.runs_dir) / unit.reference_key / "final.pt")
    return metrics


def _dense_checkpoint(reference: dict[str, Any] | None) -> Path | None:
    path = Path(reference["final"]) if reference and reference.get("final") else None
    return path if path is not None and path.is_file() else None


# -- the Tune trainable --------------------------------------------------------------------------------
def trainable(config: dict[str, Any], ctx: TrialContext) -> None:
    """Tune function trainable: ``config = {"unit": id, "params": {sampled method params}}``."""
    from ray import tune

    unit = ctx.units[config["unit"]]
    cfg = build_config(unit, config.get("params") or {})
    key = cfg.run_key()
    trial_id = tune.get_context().get_trial_id() or key
    needs_objective = unit.role == tracking.ROLE_TRIAL
    workdir = Path(ctx.runs_dir) / key
    try:
        reference = reference_of(ctx, unit)  # before any run is claimed: a missing reference creates nothing
    except ReferenceUnavailable as exc:  # an early trial whose reference will not serve: nothing to train
        m = {"step": 0, "run_key": key, "completed": 1, "reference_unavailable": 1, "failure": str(exc)[:300]}
        if needs_objective:
            m["objective"] = worst(ctx)
        tune.report(m)
        return
    with key_lock(Path(ctx.runs_dir) / f"{key}.lock"):
        run_id, final = tracking.claim_run(
            ctx.tracking_uri, ctx.experiment_id, run_key=key, tags=run_tags(cfg, unit, ctx, trial_id),
            run_name=f"{unit.id}-{key[:6]}", parent_run_id=ctx.parent_run_id)
        if final is not None:
            if final.data.tags.get("group") != unit.id:  # a run tagged before group ids named the dataset
                tracking.client(ctx.tracking_uri).set_tag(final.info.run_id, "group", unit.id)
            tune.report(_existing_metrics(final, cfg, ctx, needs_objective))
            return
        job = dict(kwargs=cfg.model_dump(mode="json"), run_id=run_id, key=key, workdir=str(workdir),
                   reference={"val": reference["val"], "test": reference["test"]} if reference else None,
                   dense_checkpoint=str(p) if (p := _dense_checkpoint(reference)) else None,
                   needs_objective=needs_objective, ctx=ctx, threads=unit.cpus or ctx.cpus)
        if ctx.use_train:
            _fit_on_train(job, trial_id)
        else:
            _run_engine(job, report=_direct_report, rank=0)


def _run_engine(job: dict[str, Any], *, report: Any, rank: int, device: Any = None,
                restore_checkpoint: Any = None) -> None:
    """The engine loop with Tune/Train reporting; the same code for both paths (``report`` differs)."""
    import torch

    from trainers.config import RunConfig
    from trainers.engine import NonFiniteLossError, train
    from trainers.reporting import MLflowReporter

    ctx: TrialContext = job["ctx"]
    cfg = RunConfig(**job["kwargs"])
    torch.set_num_threads(max(1, int(job.get("threads") or ctx.cpus)))
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    if restore_checkpoint is not None and not (workdir / "checkpoint.pt").exists():
        with restore_checkpoint.as_directory() as d:
            if (Path(d) / "checkpoint.pt").exists():
                shutil.copy2(Path(d) / "checkpoint.pt", workdir / "checkpoint.pt")
    reporter = MLflowReporter(ctx.tracking_uri, job["run_id"]) if rank == 0 else None
    key, run_id = job["key"], job["run_id"]
    resumed: dict[str, int] = {}  # what this execution continued from, told to Tune (orchestrator.failures)
    if rank == 0 and (workdir / "checkpoint.pt").exists():
        from trainers import checkpoint as ckpt

        step = 0
        with contextlib.suppress(Exception):  # an unreadable checkpoint is refused by the engine, with the reason
            step = int(ckpt.load(workdir / "checkpoint.pt").get("step", 0))
        resumed["resumed_from_step"] = step
        if restore_checkpoint is not None or job.get("fresh_start"):
            # a checkpoint this Train run wrote itself: Ray Train restarted the worker group
            resumed["restarted_by_train"] = 1
        if reporter is not None:  # rank 0 (as before)
            reporter.set_tags({"resumed_from_step": step})  # visible proof that a retry did not start over

    def on_validation(step: int, flat: dict[str, float]) -> None:
        obj = objective(flat, cfg.target_sparsity, ctx)
        if reporter is not None and obj is not None:
            reporter.log_metrics({"val/objective": obj}, step)
        if rank == 0:
            maybe_inject_fault(step, workdir)
        report({**_tune_metrics(step, flat, obj, run_id, key, ctx, job["needs_objective"]), **resumed}, step=step,
               workdir=workdir)

    try:
        result = train(cfg, reporter, workdir=workdir, reference=job["reference"], resume=True, device=device,
                       on_validation=on_validation,
                       dense_checkpoint=Path(job["dense_checkpoint"]) if job["dense_checkpoint"] else None)
    except Exception as exc:
        # Recorded FAILED (with the reason) by the engine. A Python exception (NaN loss, a bad config) would
        # happen again on a retry, so the trial ends normally with the worst objective: the search learns
        # from it and Tune does not retry it. Retries are for dead processes (killed worker, OOM), which
        # never get here.
        kind = "non-finite loss" if isinstance(exc, NonFiniteLossError) else type(exc).__name__
        # Errors before the engine's loop (a refused checkpoint, unreadable data) leave the run RUNNING.
        text = str(exc).strip().splitlines()
        tracking.mark_if_running(ctx.tracking_uri, run_id, "FAILED", f"{kind}: {text[0] if text else ''}")
        m = {"step": cfg.train.iterations, "mlflow_run_id": run_id, "run_key": key, "trial_failed": 1,
             "completed": 1, "failure": f"{kind}: {str(exc)[:300]}"}
        if job["needs_objective"]:
            m["objective"] = worst(ctx)
        report(m, step=cfg.train.iterations, workdir=None)
        return
    last = _final_metrics(result)
    val_flat = {f"val/{t}/{k}": v for t, ms in (result.val or {}).items() for k, v in ms.items()}
    if result.val_delta_t:
        val_flat["val/delta_t"] = result.val_delta_t["overall"]
    val_flat["sparsity/overall"] = (result.sparsity or {}).get("overall", 0.0)
    obj = objective(val_flat, cfg.target_sparsity, ctx)
    m = _tune_metrics(result.steps, {**val_flat, **last}, obj, run_id, key, ctx, job["needs_objective"])
    m.update(completed=1, trial_failed=0, **resumed)
    report(m, step=result.steps, workdir=None)


def _direct_report(metrics: dict[str, Any], **_: Any) -> None:
    """Direct path: metrics go straight to the Tune session of this trial."""
    from ray import tune

    tune.report(metrics)


# -- the TorchTrainer path -----------------------------------------------------------------------------
def _fit_on_train(job: dict[str, Any], trial_id: str) -> None:
    """Driver of a multi-worker/GPU trial: a TorchTrainer whose metrics Tune receives via the callback."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    ctx: TrialContext = job["ctx"]
    # no engine checkpoint before fit(): one found by a worker later was written by this Train run
    job = {**job, "fresh_start": not (Path(job["workdir"]) / "checkpoint.pt").exists()}
    resources = {"CPU": ctx.cpus, **({"GPU": ctx.gpus} if ctx.gpus else {})}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=job,
        scaling_config=ScalingConfig(num_workers=ctx.workers, use_gpu=ctx.gpus > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=f"{job['key']}-{trial_id}", storage_path=f"{ctx.storage}/train",
                             failure_config=FailureConfig(max_failures=ctx.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             callbacks=[TuneReportCallback()]),
    )
    try:
        trainer.fit()
    except Exception as exc:
        text = str(exc).strip().splitlines()
        tracking.mark_if_running(ctx.tracking_uri, job["run_id"], "FAILED",
                                 f"{type(exc).__name__}: {text[0] if text else ''}")
        raise


def train_worker(job: dict[str, Any]) -> None:
    """One Ray Train worker: the engine under DDP (the process group is set up by TorchTrainer)."""
    import ray.train
    import torch

    ctx: TrialContext = job["ctx"]
    rank = ray.train.get_context().get_world_rank()
    device = None
    if ctx.gpus:
        import ray.train.torch

        device = ray.train.torch.get_device()
    else:
        device = torch.device("cpu")

    def report(metrics: dict[str, Any], *, step: int, workdir: Path | None = None, **_: Any) -> None:
        checkpoint = None
        tmp = None
        if rank == 0 and workdir is not None and (workdir / "checkpoint.pt").exists():
            # Also hand the engine checkpoint to Ray Train storage: a worker restarted on another node (no
            # shared work dir) resumes from it.
            from ray.train import Checkpoint

            tmp = tempfile.mkdtemp(prefix="adapmtl-ckpt-")
            shutil.copy2(workdir / "checkpoint.pt", Path(tmp) / "checkpoint.pt")
            checkpoint = Checkpoint.from_directory(tmp)
        try:
            ray.train.report(metrics, checkpoint=checkpoint)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)

    _run_engine(job, report=report, rank=rank, device=device, restore_checkpoint=ray.train.get_checkpoint())
