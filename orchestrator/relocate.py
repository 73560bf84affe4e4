"""``adapmtl relocate WORKDIR``: point a moved work directory's MLflow store and sweep state at where it is now.

Why: a local store is ``<workdir>/mlflow.db`` with its artifacts in ``<workdir>/mlartifacts``, but MLflow
records each experiment's artifact location and each run's artifact URI as *absolute* URIs, and every
sweep's ``state.json`` records its work directory and tracking URI. After ``mv`` (or a copy to another
machine), artifacts would be looked for — and new ones written — in the old place, and ``resume`` would
open the old database path. MLflow has no API to change an experiment's artifact location, so this rewrites
the two columns (``experiments.artifact_location``, ``runs.artifact_uri``) in one sqlite transaction, and
the paths in each ``state.json``. The store detects a move by itself (``tracking.moved_artifacts``) and says
to run this; nothing is rewritten until a user asks.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Relocation:
    """What :func:`relocate` changed (or would change with ``dry_run``)."""

    workdir: Path
    experiments: list[tuple[str, str, str, int]] = field(default_factory=list)  # (name, old, new, runs)
    states: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"experiment {name!r}: artifacts {old} → {new} ({n} run(s))" for name, old, new, n in self.experiments]
        out += [f"sweep state {p}: paths updated" for p in self.states]
        return out or [f"{self.workdir}: nothing to relocate (the store already points here)"]


def _path_of(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def relocate(workdir: str | os.PathLike[str], *, dry_run: bool = False) -> Relocation:
    """Rewrite the artifact locations of the store in ``workdir`` (and its sweeps' state) to ``workdir``."""
    workdir = Path(workdir).expanduser().resolve()
    db = workdir / "mlflow.db"
    if not db.is_file():
        raise FileNotFoundError(f"no MLflow store at {db} (pass the work directory that holds mlflow.db)")
    new_root = (workdir / "mlartifacts").as_uri()
    result = Relocation(workdir)
    old_workdirs: set[Path] = set()
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:  # one transaction: all rewritten or none
            rows = conn.execute("SELECT experiment_id, name, artifact_location FROM experiments").fetchall()
            for exp_id, name, location in rows:
                old_root = (location or "").rstrip("/")
                if not old_root.startswith("file:") or not old_root.endswith("/mlartifacts") or old_root == new_root:
                    continue  # not a location this layout wrote (e.g. MLflow's Default experiment), or current
                (n,) = conn.execute("SELECT COUNT(*) FROM runs WHERE experiment_id = ? AND artifact_uri LIKE ?",
                                    (exp_id, old_root + "/%")).fetchone()
                result.experiments.append((name, str(_path_of(old_root)), str(workdir / "mlartifacts"), n))
                old_workdirs.add(_path_of(old_root).parent)
                if dry_run:
                    continue
                conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                             (new_root, exp_id))
                conn.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                             "WHERE experiment_id = ? AND artifact_uri LIKE ?",
                             (new_root, len(old_root) + 1, exp_id, old_root + "/%"))
    finally:
        conn.close()
    for state_file in sorted((workdir / "sweeps").glob("*/state.json")):
        if _relocate_state(state_file, workdir, old_workdirs, dry_run):
            result.states.append(state_file)
    return result


def _relocate_state(path: Path, workdir: Path, old_workdirs: set[Path], dry_run: bool) -> bool:
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    olds = set(old_workdirs)
    if state.get("workdir"):
        olds.add(Path(state["workdir"]))
    olds.discard(workdir)
    changed = False
    for key in ("workdir", "tracking_uri", "storage"):
        value = state.get(key)
        moved = _moved(value, olds, workdir) if isinstance(value, str) else None
        if moved is not None:
            state[key] = moved
            changed = True
    if changed and not dry_run:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, path)
    return changed


def _moved(value: str, olds: set[Path], workdir: Path) -> str | None:
    """``value`` with an old work directory (as a path or inside a sqlite URI) replaced by ``workdir``."""
    for old in sorted(olds, key=lambda p: -len(str(p))):
        for prefix, new in ((str(old), str(workdir)), (f"sqlite:///{old.as_posix()}", f"sqlite:///{workdir}")):
            if value == prefix or value.startswith(prefix + "/"):
                return new + value[len(prefix):]
    return None


def state_moved(state: dict, workdir: Path) -> str | None:
    """Why a sweep's ``state.json`` (found under ``workdir``) belongs to another place, or None."""
    recorded = state.get("workdir")
    if not recorded or Path(recorded) == workdir.resolve():
        return None
    return (f"this sweep's state was written in {recorded}, not {workdir.resolve()} (was the work directory "
            f"moved or copied?); run `adapmtl relocate {workdir.resolve()}` first")


# -- the verb -----------------------------------------------------------------------------------------------
def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("relocate", help="point a moved work directory's MLflow store and sweeps at its new place",
                       description="After moving or copying a work directory (mv .adapmtl elsewhere), rewrite "
                                   "the absolute artifact locations MLflow recorded and the sweeps' state.json "
                                   "paths so that runs, tables and resume use the new place.")
    p.add_argument("workdir", nargs="?", default=".adapmtl",
                   help="the work directory as it is now, holding mlflow.db (default: ./.adapmtl)")
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.set_defaults(func=cmd_relocate)


def cmd_relocate(args: argparse.Namespace) -> int:
    result = relocate(args.workdir, dry_run=args.dry_run)
    for line in result.lines():
        print(("would update " if args.dry_run and "nothing" not in line else "") + line, file=sys.stderr)
    return 0
