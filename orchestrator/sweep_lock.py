"""One driver per sweep. A second ``run``/``resume`` of a sweep that is running is refused, naming the holder.

Two drivers on one sweep used one Tune experiment: one failed to restore it, exited 0 with an empty table
and marked the parent run FINISHED while the other was still training (and ``_finish`` closes live runs it
takes for orphans). Two locks, both of which die with the driver, so a killed driver never blocks a resume:

* **sweep dir** (always): an exclusive ``fcntl.flock`` on ``sweeps/<name>/driver.lock``, taken before Ray
  starts; the file holds the holder's pid, host and start time for the refusal message. The kernel drops
  the lock when the process dies, however it dies. This covers every driver sharing the work dir (the
  Tune experiment and ``state.json`` live there unless ``ray.storage`` says otherwise).
* **cluster** (an explicit ``--address``): a named actor ``adapmtl-sweep:<name>`` in the namespace
  ``adapmtl-sweeps`` of that cluster, created by the driver without ``lifetime="detached"``. Ray's GCS
  registers actor names atomically (a second creation fails), and a non-detached actor is owned by its
  driver's job: when the driver exits or dies the GCS ends the job and frees the name. So drivers on
  different machines (different work dirs) cannot run one sweep on one cluster at once, with no lease to
  renew and no stale lock after a crash. It costs one zero-CPU actor process on the cluster.

Not covered: two drivers on different machines that use *different* clusters (or embedded Rays) with one
shared MLflow server and one shared ``ray.storage``. The MLflow store has no compare-and-set, so a lock
there would need leases and heartbeats; use one cluster per sweep.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

LOCK_FILE = "driver.lock"
NAMESPACE = "adapmtl-sweeps"


class SweepBusy(RuntimeError):
    """Another live driver holds the sweep (one line naming it)."""


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv[:3])[:200]}


def _describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


class LocalLock:
    """The sweep-dir lock; held until :meth:`release` or the end of the process."""

    def __init__(self, root: Path, name: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SweepBusy(f"sweep {name} is already being run by {_describe(holder)}; wait for it to end or "
                            f"stop it (lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me()).encode(), 0)
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


class ClusterLock:
    """The cluster-wide lock of a sweep: a named actor owned by this driver (see the module docstring)."""

    def __init__(self, name: str) -> None:
        import ray

        actor_name = f"adapmtl-sweep:{name}"
        holder_cls = ray.remote(num_cpus=0, max_restarts=0)(_holder_class())
        try:
            self.actor = holder_cls.options(name=actor_name, namespace=NAMESPACE).remote(_me())
        except ValueError:  # the name is taken: another live driver's actor
            raise SweepBusy(f"sweep {name} is already being run on this cluster by {_current_holder(actor_name)}; "
                            "wait for it to end or stop it") from None

    def release(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self.actor)


def _holder_class() -> type:
    """The actor class that holds a sweep's name on the cluster; it only remembers who holds it. Defined in a
    function so that Ray ships it by value: the cluster needs nothing of this package to run it."""

    class SweepHolder:
        def __init__(self, holder: dict[str, Any]) -> None:
            self.holder = holder

        def info(self) -> dict[str, Any]:
            return self.holder

    return SweepHolder


def _current_holder(actor_name: str) -> str:
    import ray

    try:
        actor = ray.get_actor(actor_name, namespace=NAMESPACE)
        return _describe(ray.get(actor.info.remote(), timeout=15))
    except Exception:
        return "another driver"
