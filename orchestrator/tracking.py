"""MLflow plumbing shared by single runs and sweeps: URI resolution, experiments, nested runs, identity.

Runs are created here (never by Ray's or Optuna's MLflow callbacks) so that nesting under the sweep's
parent run and the run identity tag ``run_key`` are decided in one place. Identity rule: one MLflow run per
``run_key`` per experiment. A finished run with that key is reused as-is (the trial is skipped); an
unfinished one (killed driver, killed worker) is reopened and continued, never duplicated.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROLE_SWEEP = "sweep"
ROLE_REFERENCE = "reference"
ROLE_TRIAL = "trial"
PARENT_TAG = "mlflow.parentRunId"
#: Prefix of the failure reason the engine records for NaN/inf losses: such runs are final (re-running the
#: same config diverges again), unlike runs cut short by a killed process.
NONFINITE_PREFIX = "non-finite loss"


def resolve_tracking_uri(uri: str | None = None, workdir: Path | str | None = None) -> str:
    """``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > ``sqlite:///<workdir>/mlflow.db`` (DESIGN §3.6).

    The precedence lives in ``results.schema`` so ``adapmtl run`` and ``adapmtl table`` always agree; here
    the local store's directory is also created.
    """
    from results.schema import resolve_tracking_uri as resolve

    resolved = resolve(uri, workdir)
    if resolved.startswith("sqlite:///"):
        Path(resolved[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return resolved


def artifact_location(uri: str, workdir: Path | str | None = None) -> str | None:
    """Artifacts live beside a local sqlite store (``<workdir>/mlartifacts``); servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def check_reachable(uri: str) -> None:
    """Fail early, in one line and in seconds, when the tracking store cannot be reached.

    A bounded probe (one request, no retries) for servers; for a fresh sqlite store this also runs the schema
    migration, once, under a file lock (``orchestrator.store``): processes creating the same new database at
    once race ("duplicate column name", "_alembic_tmp_latest_metrics already exists").
    """
    from orchestrator.store import probe

    probe(uri)


class StoreMovedError(ValueError):
    """A local store whose experiment keeps its artifacts elsewhere: the work directory was moved or copied."""


def moved_artifacts(uri: str, location: str | None) -> str | None:
    """Why an experiment's artifact location does not belong to this local store (None when it does).

    Local stores keep artifacts beside the database (``<workdir>/mlartifacts``, :func:`artifact_location`),
    and MLflow records that location as an absolute URI; after the work directory moves, new artifacts
    would be written to (or looked for in) the old place.
    """
    expected = artifact_location(uri)
    if expected is None or not location or not location.startswith("file:"):
        return None
    if not location.rstrip("/").endswith("/mlartifacts") or location.rstrip("/") == expected:
        return None
    from urllib.parse import unquote, urlparse

    old = Path(unquote(urlparse(location).path))
    state = "no longer exists" if not old.exists() else "is not next to this store"
    workdir = Path(uri[len("sqlite:///"):]).parent
    return (f"MLflow store {workdir / 'mlflow.db'} keeps artifacts in {old}, which {state} (was the work "
            f"directory moved or copied?); run `adapmtl relocate {workdir}` to point the store at "
            f"{workdir / 'mlartifacts'}")


def ensure_experiment(uri: str, name: str) -> str:
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        problem = moved_artifacts(uri, exp.artifact_location)
        if problem:
            raise StoreMovedError(problem)
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=artifact_location(uri))
    except Exception:  # created concurrently by another process: use theirs
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _filter(tags: Mapping[str, Any]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def find_run(uri: str, experiment_id: str, tags: Mapping[str, str]) -> Any | None:
    """The newest run of the experiment whose tags all match (used for identity: ``run_key``, ``role``)."""
    runs = client(uri).search_runs([experiment_id], filter_string=_filter(tags), max_results=5,
                                   order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def search(uri: str, experiment_id: str, tags: Mapping[str, Any] | None = None, max_results: int = 50_000) -> list:
    """Every run of the experiment matching ``tags`` (paged; a paper-scale sweep has thousands)."""
    c = client(uri)
    out: list = []
    token = None
    while True:
        page = c.search_runs([experiment_id], filter_string=_filter(tags or {}), max_results=min(max_results, 1000),
                             page_token=token)
        out.extend(page)
        token = page.token
        if not token or len(out) >= max_results:
            return out


def create_run(uri: str, experiment_id: str, *, run_name: str, tags: Mapping[str, Any],
               parent_run_id: str | None = None) -> str:
    all_tags = {k: str(v) for k, v in tags.items()}
    all_tags.setdefault("git_sha", git_sha())
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client(uri).create_run(experiment_id, run_name=run_name, tags=all_tags)
    return run.info.run_id


def get_or_create_parent(uri: str, experiment_id: str, sweep: str, params: Mapping[str, Any]) -> str:
    """The sweep's one parent run: reused on re-run/resume (identity = sweep name within its experiment)."""
    c = client(uri)
    existing = find_run(uri, experiment_id, {"role": ROLE_SWEEP, "sweep": sweep})
    if existing is not None:
        c.update_run(existing.info.run_id, status="RUNNING")
        c.set_tag(existing.info.run_id, "status", "running")
        return existing.info.run_id
    run_id = create_run(uri, experiment_id, run_name=f"sweep-{sweep}",
                        tags={"sweep": sweep, "role": ROLE_SWEEP, "status": "running"})
    from mlflow.entities import Param

    batch = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(batch), 100):
        c.log_batch(run_id, params=batch[i:i + 100])
    return run_id


def is_final(run: Any) -> bool:
    """A run that must not be trained again: finished, or failed because its loss diverged."""
    if run.info.status == "FINISHED":
        return True
    reason = run.data.tags.get("failure_reason", "")
    return run.info.status == "FAILED" and reason.startswith(NONFINITE_PREFIX)


def claim_run(uri: str, experiment_id: str, *, run_key: str, run_name: str, tags: Mapping[str, Any],
              parent_run_id: str | None) -> tuple[str, Any | None]:
    """The run of ``run_key``: ``(run_id, run)`` where ``run`` is the existing final run (skip it) or None.

    Callers serialise claims of one key (a lock per key) so two trials of one config never race here.
    """
    c = client(uri)
    existing = find_run(uri, experiment_id, {"run_key": run_key})
    if existing is not None:
        if is_final(existing):
            return existing.info.run_id, existing
        run_id = existing.info.run_id
        c.update_run(run_id, status="RUNNING")
        from mlflow.entities import RunTag

        fresh = {k: str(v) for k, v in tags.items()}
        fresh["status"] = "running"
        c.log_batch(run_id, tags=[RunTag(k, v) for k, v in fresh.items()])
        if "failure_reason" in existing.data.tags:
            c.delete_tag(run_id, "failure_reason")
        return run_id, None
    return create_run(uri, experiment_id, run_name=run_name, tags={**tags, "run_key": run_key, "status": "running"},
                      parent_run_id=parent_run_id), None


def mark_if_running(uri: str, run_id: str, status: str, reason: str) -> bool:
    """Close a run that its process left RUNNING (Tune killed the trial, or the process died)."""
    c = client(uri)
    try:
        run = c.get_run(run_id)
    except Exception:
        return False
    if run.info.status != "RUNNING":
        return False
    c.set_tag(run_id, "failure_reason", reason[:5000])
    c.set_tag(run_id, "status", status.lower())
    c.set_terminated(run_id, status=status)
    return True


def children(uri: str, experiment_id: str, parent_run_id: str) -> list:
    return search(uri, experiment_id, {PARENT_TAG: parent_run_id})


def split_metrics(metrics: Mapping[str, float], prefix: str) -> dict[str, dict[str, float]]:
    """``{"val/normal/angle_mean": v, ...}`` → ``{"normal": {"angle_mean": v}}`` (ΔT keys excluded)."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if not key.startswith(prefix + "/"):
            continue
        task, sep, metric = key[len(prefix) + 1:].partition("/")
        if sep and metric and task != "delta_t":
            out.setdefault(task, {})[metric] = float(value)
    return out


def reference_metrics(run: Any) -> dict[str, dict[str, dict[str, float]]]:
    """The ΔT reference of a finished dense run: its last validation and its test metrics."""
    m = run.data.metrics
    return {"val": split_metrics(m, "val"), "test": split_metrics(m, "test")}


def directions_tag(dataset: str, tasks: Iterable[str]) -> str | None:
    """The optional ``directions`` tag (lets results recompute ΔT without this package's tables)."""
    try:
        from trainers.tasks import get_task

        d = {t: dict(get_task(t, dataset).metric_directions) for t in tasks}
    except Exception:
        return None
    return json.dumps({t: dict(sorted(m.items())) for t, m in d.items()}, separators=(",", ":"))


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"
