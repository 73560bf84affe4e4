"""MLflow plumbing shared by single runs and sweeps: URI resolution, experiments, nested runs, identity.

Runs are created here (never by Ray's or Optuna's MLflow callbacks) so that nesting under the sweep's
parent run and the run identity tag ``run_key`` are decided in one place.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def resolve_tracking_uri(uri: str | None = None, workdir: Path | str | None = None) -> str:
    """``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > ``sqlite:///<workdir>/mlflow.db`` (DESIGN §3.6)."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(workdir or Path.cwd() / ".adapmtl").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def artifact_location(uri: str, workdir: Path | str | None = None) -> str | None:
    """Artifacts live beside a local sqlite store (``<workdir>/mlartifacts``); servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def check_reachable(uri: str) -> None:
    """Fail early, in one line, when the tracking store cannot be reached."""
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"MLflow tracking store {uri} is unreachable: {first[:200]}") from None


def ensure_experiment(uri: str, name: str) -> str:
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return c.create_experiment(name, artifact_location=artifact_location(uri))


def find_run(uri: str, experiment_id: str, tags: Mapping[str, str]) -> Any | None:
    """The newest run of the experiment whose tags all match (used for identity: ``run_key``, ``role``)."""
    flt = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    runs = client(uri).search_runs([experiment_id], filter_string=flt, max_results=5,
                                   order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def create_run(uri: str, experiment_id: str, *, run_name: str, tags: Mapping[str, Any],
               parent_run_id: str | None = None) -> str:
    all_tags = {k: str(v) for k, v in tags.items()}
    all_tags.setdefault("git_sha", git_sha())
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client(uri).create_run(experiment_id, run_name=run_name, tags=all_tags)
    return run.info.run_id


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"
