"""The one module that names every file a run writes (OpenLTH ``paths.py``): nothing else builds paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """Files of one run, all under its work directory."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        """Mid-run checkpoint used to resume (overwritten atomically)."""
        return self.root / "checkpoint.pt"

    @property
    def final(self) -> Path:
        """Final weights + masks/thresholds + method state (an MLflow artifact)."""
        return self.root / "final.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        """Per-step metric history (CSV, an MLflow artifact)."""
        return self.root / "history.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def ensure(self) -> RunPaths:
        self.root.mkdir(parents=True, exist_ok=True)
        return self
