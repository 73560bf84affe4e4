"""Every file a sweep writes, named in one place (the sweep-level sibling of ``trainers.paths``).

Layout under the work directory (default ``./.adapmtl``, shared with the MLflow sqlite store)::

    <workdir>/mlflow.db, mlartifacts/            the default tracking store (DESIGN §3.6)
    <workdir>/sweeps/<name>/spec.yaml            the spec as run (``resume NAME`` needs nothing else)
    <workdir>/sweeps/<name>/state.json           parent run, tracking URI, address, finished phases
    <workdir>/sweeps/<name>/tune/<phase>/        Tune experiments (unless ``ray.storage`` says otherwise)
    <workdir>/sweeps/<name>/runs/<run_key>/      engine work dir of one run: checkpoint.pt, final.pt, ...
    <workdir>/sweeps/<name>/<name>_comparison.tex, <name>_sweep.png   quickstart outputs
    <workdir>/sweeps/<name>/results/             tables (.tex/.md), <name>.bib, plots (.png/.pdf) exported at the
                                                 end of every run, also logged to the parent MLflow run
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_WORKDIR = ".adapmtl"


def default_workdir() -> Path:
    return (Path.cwd() / DEFAULT_WORKDIR).resolve()


@dataclass(frozen=True)
class SweepPaths:
    workdir: Path
    name: str

    @property
    def root(self) -> Path:
        return self.workdir / "sweeps" / self.name

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_key: str) -> Path:
        return self.runs / run_key

    def lock(self, run_key: str) -> Path:
        return self.runs / f"{run_key}.lock"

    def storage(self, configured: str | None) -> str:
        """Tune/Train storage: the spec's (any pyarrow URI) or a local directory in the sweep dir."""
        if configured:
            return configured.rstrip("/") + f"/{self.name}" if "://" in configured else \
                str(Path(configured).expanduser().resolve() / self.name)
        return str(self.root / "tune")

    @property
    def results(self) -> Path:
        """Tables and plots exported at the end of a run (also artifacts of the sweep's parent run)."""
        return self.root / "results"

    def output(self, suffix: str) -> Path:
        return self.root / f"{self.name}_{suffix}"

    def ensure(self) -> SweepPaths:
        self.runs.mkdir(parents=True, exist_ok=True)
        return self

    # -- state ---------------------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.state)


def find_sweep(name_or_path: str, workdir: Path | None = None) -> tuple[Path, Path]:
    """``resume``/``status`` argument → (spec file, workdir). Accepts a sweep name, a sweep directory, a
    ``state.json``, or a spec YAML (whose sweep dir is then looked up under ``workdir``)."""
    p = Path(name_or_path).expanduser()
    if p.is_file() and p.name == "state.json":
        p = p.parent
    if p.is_dir() and (p / "spec.yaml").is_file():
        return (p / "spec.yaml").resolve(), p.resolve().parent.parent
    if p.is_file() and p.suffix in (".yaml", ".yml"):
        return p.resolve(), (workdir or default_workdir())
    wd = workdir or default_workdir()
    candidate = SweepPaths(wd, name_or_path).spec
    if candidate.is_file():
        return candidate, wd
    raise FileNotFoundError(f"no sweep {name_or_path!r} under {wd / 'sweeps'} (pass a sweep name, its directory "
                            "or its spec file)")
