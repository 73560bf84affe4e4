"""`adapmtl submit --follow` against a real `ray start --head` cluster on 127.0.0.1 with token auth on.

The cluster gets explicit ports and its own temp dir, and is stopped through the PIDs of its own processes
(never a bare `ray stop`, which would kill every Ray instance on the machine, other tests' included).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_orchestrator import adapmtl, check_sweep, env, runs_of, tiny_spec, write

from orchestrator.cluster import free_port


def _cluster_processes(temp_dir: str) -> list[int]:
    """PIDs that name the cluster's own temp dir on their command line or hold a file in it open (the
    dashboard and runtime-env agents rename themselves ``ray::...`` but keep their logs there)."""
    from orchestrator.leftovers import processes_using

    return processes_using(Path(temp_dir))


def _stop_cluster(temp_dir: str) -> None:
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        pids = _cluster_processes(temp_dir)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _cluster_processes(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def local_cluster():
    """`ray start --head` on 127.0.0.1 (token auth), yielding the dashboard (Jobs) address."""
    temp_dir = tempfile.mkdtemp(prefix="adapmtl-rt-", dir="/tmp")
    gcs, dash = free_port(), free_port()
    ports = {f"--{k}": str(free_port()) for k in ("ray-client-server-port", "dashboard-agent-listen-port",
                                                  "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                                  "metrics-export-port", "node-manager-port",
                                                  "object-manager-port")}
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1",
           "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
           "--temp-dir", temp_dir, "--num-cpus", "2", "--disable-usage-stats",
           *[x for kv in ports.items() for x in kv]]
    proc = subprocess.run(cmd, env=env(RAY_AUTH_MODE="token"), capture_output=True, text=True, timeout=180)
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        yield f"http://127.0.0.1:{dash}", temp_dir
    finally:
        _stop_cluster(temp_dir)


@pytest.mark.integration
def test_submit_follow_runs_the_sweep_as_a_ray_job(tmp_path, local_cluster):
    address, temp_dir = local_cluster
    assert (Path.home() / ".ray" / "auth_token").is_file()  # token auth is on for this cluster
    spec = write(tmp_path, tiny_spec("tiny-job", {"dense": {}, "snip": {}, "imp": {}}, [0.5, 0.8]))
    wd = tmp_path / "wd"
    t0 = time.monotonic()
    # RAY_AUTH_MODE is left unset: submit must find and use the token by itself.
    proc = adapmtl("submit", str(spec), "--address", address, "--follow", "--workdir", str(wd), cwd=tmp_path,
                   timeout=480)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    print(f"job wall time {time.monotonic() - t0:.0f} s")
    assert proc.stdout.startswith("raysubmit_")
    assert "SUCCEEDED" in proc.stderr
    check_sweep(runs_of(wd, "tiny-job"), "tiny-job", n_children=1 + 2 * 2)
    assert _cluster_processes(temp_dir)  # the cluster outlived the job; the fixture stops it


def test_unreachable_jobs_address_is_one_line(tmp_path, capsys):
    from orchestrator.cli import main

    spec = write(tmp_path, tiny_spec("tiny-job", {"dense": {}}, []))
    rc = main(["submit", str(spec), "--address", f"http://127.0.0.1:{free_port()}", "--workdir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and "unreachable" in err, err
