"""What a killed driver leaves behind, and cleaning it up on the next ``run``/``resume``.

A driver killed with SIGKILL cannot stop its embedded Ray: the GCS and raylet die with it, but the dashboard
agent and the runtime-env agent (children of the raylet, re-parented to init) stayed alive for minutes,
still listening, and the temp dir ``/tmp/adapmtl-ray-*`` stayed on disk. Each embedded Ray's temp dir
therefore holds an owner file naming its driver (pid, the process's start time, boot id, host). The next
driver removes a dir only when that owner is provably dead: same host, and either another boot or no live
process with that pid *and* start time (pids are reused). Dirs without an owner file (other tools, older
versions) and dirs of live drivers are never touched. The leftover processes are the ones that hold the
dead dir open (their log files are in it) or name it on their command line; they get SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

OWNER_FILE = "adapmtl-driver.json"
TEMP_PREFIX = "adapmtl-ray-"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` (clock ticks since boot; with the pid it identifies one process), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def write_owner(temp_dir: str | Path) -> None:
    """Mark ``temp_dir`` as this driver's (called before Ray starts in it)."""
    pid = os.getpid()
    owner = {"pid": pid, "start_ticks": _start_ticks(pid), "boot_id": _boot_id(), "host": socket.gethostname()}
    (Path(temp_dir) / OWNER_FILE).write_text(json.dumps(owner))


def owner_is_dead(temp_dir: Path) -> int | None:
    """The dead owner's pid when ``temp_dir`` provably belongs to a dead driver on this host; else None."""
    try:
        owner = json.loads((temp_dir / OWNER_FILE).read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no owner file: not ours to judge
    if owner.get("host") != socket.gethostname():
        return None
    if owner.get("boot_id") and owner["boot_id"] != _boot_id():
        return pid  # written before a reboot: nothing of it can be running
    ticks = _start_ticks(pid)
    if ticks is not None and ticks == owner.get("start_ticks"):
        return None  # the driver is alive
    return pid


def processes_using(path: Path) -> list[int]:
    """Our user's processes that name ``path`` on their command line, or hold a file under it open."""
    prefix = str(path) + os.sep
    me, uid, out = os.getpid(), os.getuid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if str(path) in cmdline:
                out.append(int(entry.name))
                continue
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(prefix):
                        out.append(int(entry.name))
                        break
        except OSError:
            continue  # gone, or not ours to read
    return out


def _stop(pids: list[int], grace_s: float = 5.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        alive = [p for p in pids if _start_ticks(p) is not None]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(_start_ticks(p) is not None for p in alive) and time.monotonic() < deadline:
            time.sleep(0.1)


@dataclass
class Cleaned:
    temp_dir: str
    owner_pid: int
    processes: int


def clean_dead_drivers(root: str | Path = "/tmp") -> list[Cleaned]:
    """Stop the leftover processes and remove the temp dirs of dead drivers' embedded Rays under ``root``."""
    cleaned = []
    for temp_dir in sorted(Path(root).glob(TEMP_PREFIX + "*")):
        with contextlib.suppress(OSError):
            if not temp_dir.is_dir() or temp_dir.stat().st_uid != os.getuid():
                continue
        pid = owner_is_dead(temp_dir)
        if pid is None:
            continue
        pids = processes_using(temp_dir)
        _stop(pids)
        shutil.rmtree(temp_dir, ignore_errors=True)
        cleaned.append(Cleaned(str(temp_dir), pid, len(pids)))
    return cleaned
