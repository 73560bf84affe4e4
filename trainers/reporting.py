"""Where a run's numbers go. The engine talks to a small ``Reporter``; MLflow is one implementation.

Keeping the loop ignorant of MLflow lets the same loop run in a unit test (``MemoryReporter``), in a Ray
Train worker of rank > 0 (``NullReporter``: only rank 0 talks to MLflow), and under Tune (the orchestrator
wraps a reporter that also forwards validation metrics to Tune).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


class Reporter(Protocol):
    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_json(self, obj: Any, name: str) -> None: ...
    def end(self, status: str, reason: str | None = None) -> None: ...


class NullReporter:
    """Discards everything (non-zero ranks, dry runs)."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def log_json(self, obj: Any, name: str) -> None:
        pass

    def end(self, status: str, reason: str | None = None) -> None:
        pass


class MemoryReporter(NullReporter):
    """Keeps everything in memory: tests and the engine's own per-step history."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.tags: dict[str, Any] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.artifacts: list[tuple[Path, str | None]] = []
        self.json: dict[str, Any] = {}
        self.status: str | None = None
        self.reason: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update(tags)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, float(v)))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path), artifact_path))

    def log_json(self, obj: Any, name: str) -> None:
        self.json[name] = obj

    def end(self, status: str, reason: str | None = None) -> None:
        self.status, self.reason = status, reason

    def last(self, key: str) -> float:
        return self.metrics[key][-1][1]


class FanOutReporter(NullReporter):
    """Sends every call to several reporters (e.g. MLflow + the in-memory history)."""

    def __init__(self, *reporters: Any) -> None:
        self.reporters = [r for r in reporters if r is not None]

    def log_params(self, params: Mapping[str, Any]) -> None:
        for r in self.reporters:
            r.log_params(params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for r in self.reporters:
            r.set_tags(tags)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for r in self.reporters:
            r.log_metrics(metrics, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        for r in self.reporters:
            r.log_artifact(path, artifact_path)

    def log_json(self, obj: Any, name: str) -> None:
        for r in self.reporters:
            r.log_json(obj, name)

    def end(self, status: str, reason: str | None = None) -> None:
        for r in self.reporters:
            r.end(status, reason)


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, list | tuple | dict) else str(v)
    return text[:6000]  # MLflow's param value limit


class MLflowReporter:
    """Logs to one existing MLflow run through ``MlflowClient`` (batched: one request per call).

    The run is created by the caller (the orchestrator creates it nested under the sweep's parent run, so
    identity and nesting are decided in one place); the reporter only writes to it.

    A resumed run replays the steps between its last checkpoint and the point where the previous attempt
    died, and those steps' points are already in MLflow: a point whose step is not past the last one logged
    for its key is such a replay and is not logged again (the resumed run is the same trajectory, so the
    first attempt's value stands). The same rule drops a key logged twice at one step (``sparsity/*`` by both
    the training log and a validation at that step), so a metric's history never has a step twice.
    """

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id = run_id
        self._logged_through: dict[str, int] | None = None  # key -> last step logged (MLflow's, then ours)

    def _already_logged(self) -> dict[str, int]:
        """Last logged step per key of a reopened run (nothing for a fresh run: one request)."""
        if self._logged_through is None:
            keys = list(self.client.get_run(self.run_id).data.metrics)
            self._logged_through = {}
            for key in keys:
                history = self.client.get_metric_history(self.run_id, key)
                if history:
                    self._logged_through[key] = max(m.step for m in history)
        return self._logged_through

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, _param_value(v)) for k, v in params.items() if k not in existing]
        for i in range(0, len(fresh), 100):
            self.client.log_batch(self.run_id, params=fresh[i : i + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        done = self._already_logged()
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if math.isfinite(float(v)) and step > done.get(k, -1)]
        for m in batch:
            done[m.key] = step
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_json(self, obj: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_text(json.dumps(obj, indent=2, default=str))
            self.client.log_artifact(self.run_id, str(p))

    def end(self, status: str, reason: str | None = None) -> None:
        if reason:
            self.client.set_tag(self.run_id, "failure_reason", reason[:5000])
        self.client.set_tag(self.run_id, "status", status.lower())
        self.client.set_terminated(self.run_id, status=status)
