"""Safe, local-only, fail-loud orchestration with the real Ray and MLflow (no mocks; everything on 127.0.0.1).

* the embedded Ray listens on loopback only (``ss``), one driver per sweep, SIGTERM = Ctrl-C (exit 143,
  runs KILLED, resumable), a changed spec under the same name is refused with its differences;
* a port that is open but not Ray, a wrong or a missing token: one line in seconds, no parent run left;
* the cluster-wide sweep lock (a named actor) refuses a second driver and dies with the first;
* a sweep whose planned groups produced nothing exits non-zero with the recorded reason;
* what a SIGKILLed driver leaves (agents, temp dir) is cleaned by the next driver, and only that.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_orchestrator import TINY_TRAIN, adapmtl, env, runs_of, tiny_spec, write
from test_orchestrator_submit import _cluster_processes, _stop_cluster

from orchestrator.cluster import free_port

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


# -- helpers ---------------------------------------------------------------------------------------------
def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def listeners(pids: set[int]) -> list[tuple[str, str, int]]:
    """(host, process name, pid) of every listening TCP socket owned by ``pids`` (from ``ss -ltnp``)."""
    out = []
    text = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        owners = [(name, int(pid)) for name, pid in re.findall(r'\("([^"]*)",pid=(\d+)', line)]
        mine = [(n, p) for n, p in owners if p in pids]
        if not mine:
            continue
        local = line.split()[3]
        host = local.rsplit(":", 1)[0].strip("[]")
        out.append((host, *mine[0]))
    return out


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"driver ended while waiting for {what}:\n" + (log.read_text()[-3000:] if log else ""))
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}" + (":\n" + log.read_text()[-3000:] if log else ""))


def reference_reported(wd: Path, name: str) -> bool:
    return any(r.data.tags.get("role") == "reference" and any(k.startswith("val/") for k in r.data.metrics)
               for r in runs_of(wd, name))


@contextlib.contextmanager
def driver(cmd: list[str], cwd: Path, log: Path, **envkw: str):
    """A CLI driver in its own session (its whole group is SIGKILLed at the end, whatever happened)."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env(**envkw), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- the embedded cluster ------------------------------------------------------------------------------
@pytest.mark.integration
def test_embedded_sweep_is_loopback_only_single_driver_and_sigterm_is_like_ctrl_c(tmp_path, capsys):
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to list listening sockets")
    name = "tiny-safe"
    train = dict(TINY_TRAIN, iterations=40, val_every=10, checkpoint_every=10, log_every=10)
    spec = write(tmp_path, tiny_spec(name, {"dense": {}, "snip": {}}, [0.5], train=train))
    wd = tmp_path / "wd"
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--workdir", str(wd)]
    log = tmp_path / "driver.log"
    with driver(cmd, tmp_path, log) as proc:
        wait_for(lambda: reference_reported(wd, name), 240, "the reference's first validation", proc, log)

        # 1. every listening socket of the embedded cluster (driver, GCS, raylet, agents, workers) is loopback
        socks = listeners(descendants(proc.pid))
        names = {n for _, n, _ in socks}
        assert {"gcs_server", "raylet"} <= names, socks  # the cluster really was seen
        assert len({p for _, _, p in socks}) >= 4, socks  # + driver, agents, the trial's worker
        exposed = [s for s in socks if s[0] not in LOOPBACK]
        assert not exposed, f"listening beyond loopback: {exposed}"

        # 2. a second driver of the running sweep is refused, naming the holder (the CLI's one line for it:
        # test_a_second_driver_is_refused_in_one_line)
        from orchestrator.sweep_lock import LocalLock, SweepBusy

        with pytest.raises(SweepBusy, match=f"sweep {name} is already being run by pid {proc.pid} on "):
            LocalLock(wd / "sweeps" / name, name)

        # 3. SIGTERM (to the driver only) is handled like Ctrl-C
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    out = log.read_text()
    assert rc == 143, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last == (f"adapmtl: sweep {name} terminated (SIGTERM): its runs are marked KILLED; "
                    f"`adapmtl resume {name}` continues it"), out[-3000:]
    assert "Aborted" not in out and "core dumped" not in out and "*** " not in out, out[-3000:]
    runs = runs_of(wd, name)
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    assert parent.info.status == "KILLED" and parent.data.tags["status"] == "killed"
    kids = [r for r in runs if r is not parent]
    assert kids and not [r for r in kids if r.info.status == "RUNNING"], [(r.info.run_name, r.info.status)
                                                                          for r in kids]
    temp_dir = re.search(r"temp dir (/\S+)", out).group(1)
    wait_for(lambda: not _cluster_processes(temp_dir), 30, "the embedded Ray to stop")
    assert not Path(temp_dir).exists()

    # 4. the same name with another meaning is refused, listing what changed (before Ray starts)
    changed = tiny_spec(name, {"dense": {}, "snip": {}}, [0.5], train=dict(train, lr=0.01))
    changed["dataset"]["tasks"] = ["segment_semantic"]
    (tmp_path / "changed").mkdir()
    other = write(tmp_path / "changed", changed)
    from orchestrator.cli import main

    rc = main(["run", str(other), "--workdir", str(wd)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "already exists with another meaning" in err and "dataset.tasks" in err and "train.lr" in err, err

    # 5. resumable: every unfinished run says why and has its checkpoint (`adapmtl resume` after a killed
    # driver: test_orchestrator.py::test_killed_driver_then_resume_finishes_without_duplicates)
    ref = next(r for r in kids if r.data.tags.get("role") == "reference")
    assert ref.data.tags["failure_reason"] and (wd / "sweeps" / name / "runs" / ref.data.tags["run_key"] /
                                               "checkpoint.pt").is_file()
    assert not json.loads((wd / "sweeps" / name / "state.json").read_text()).get("done")


def test_groups_without_a_result_fail_the_sweep_with_the_recorded_reason(tmp_path, capsys):
    """A reference whose loss diverged (as the engine records it): its groups cannot run, so the sweep's
    outcome lists every planned unit with the reason MLflow recorded (not "its trial errored"), the parent
    run is FAILED and the CLI exits 1 with that one line. Real sqlite MLflow; the end-to-end run with Ray is
    test_orchestrator.py::test_a_reference_that_died_is_retrained_by_resume_and_its_groups_run."""
    from orchestrator import spec as specmod
    from orchestrator import sweep, sweep_cli, tracking
    from orchestrator.plan import build_plan

    name = "tiny-nanref"
    plan = build_plan(specmod.parse_spec(tiny_spec(name, {"dense": {}, "snip": {}, "imp": {}}, [0.5])))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_reachable(uri)
    exp = tracking.ensure_experiment(uri, name)
    parent = tracking.get_or_create_parent(uri, exp, name, {})
    ref = plan.references[0]
    run_id, _ = tracking.claim_run(uri, exp, run_key=ref.run_key, run_name="ref", parent_run_id=parent,
                                   tags={"role": "reference", "group": ref.id, "sweep": name})
    reason = "non-finite loss (segment_semantic, normal) within steps 1-1"
    tracking.client(uri).set_tag(run_id, "failure_reason", reason)
    tracking.client(uri).set_terminated(run_id, status="FAILED")

    outcome = sweep._finish(plan, sweep.SweepOutcome(name, uri, exp, parent))
    assert set(outcome.unreported) == {ref.id, *(g.id for g in plan.groups)}
    line = outcome.unreported_line()
    assert line.startswith(f"sweep {name}: 3 planned reference(s)/group(s) produced no reported run: "), line
    assert f"failed: {reason}" in line and "snip-synthetic_scenes-resnet34-sp0.5-seed0" in line, line
    assert "errored" not in line and "\n" not in line
    run = tracking.client(uri).get_run(parent)
    assert run.info.status == "FAILED" and reason in run.data.tags["failure_reason"]

    rc = _execute_with(sweep_cli, outcome)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1] == f"adapmtl: error: {line}", err


def _execute_with(sweep_cli, outcome) -> int:
    """``sweep_cli._execute`` with ``run_sweep`` answering ``outcome`` (the CLI's exit-code rule alone)."""
    import orchestrator.sweep as sweep

    real = sweep.run_sweep
    sweep.run_sweep = lambda *a, **k: outcome
    try:
        return sweep_cli._execute(None, Path("."), outcome.tracking_uri, None, None)
    finally:
        sweep.run_sweep = real


# -- connect failures ----------------------------------------------------------------------------------
class _OpenPort(threading.Thread):
    """127.0.0.1 port that accepts connections and answers like an HTTP/1 server (not Ray)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()


@pytest.mark.integration
def test_an_open_port_that_is_not_ray_fails_fast_and_leaves_no_parent_run(tmp_path):
    server = _OpenPort()
    server.start()
    spec = write(tmp_path, tiny_spec("tiny-notray", {"dense": {}}, []))
    wd = tmp_path / "wd"
    t0 = time.monotonic()
    proc = adapmtl("run", str(spec), "--workdir", str(wd), "--address", f"127.0.0.1:{server.port}", cwd=tmp_path,
                   timeout=120)
    took = time.monotonic() - t0
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert f"cannot connect to Ray at 127.0.0.1:{server.port}: not a Ray cluster" in err, err
    assert took < 60, took  # the probe itself is one call; the rest is the CLI's imports on a busy machine
    assert not [r for r in runs_of(wd, "tiny-notray") if r.info.status == "RUNNING"]
    assert not runs_of(wd, "tiny-notray")  # connected before anything was written


@pytest.fixture(scope="module")
def token_cluster():
    """`ray start --head` on 127.0.0.1 with token auth; yields its GCS address. Stopped by its own PIDs."""
    temp_dir = tempfile.mkdtemp(prefix="adapmtl-rt-", dir="/tmp")
    gcs = free_port()
    ports = {f"--{k}": str(free_port()) for k in ("ray-client-server-port", "dashboard-agent-listen-port",
                                                  "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                                  "metrics-export-port", "node-manager-port",
                                                  "object-manager-port", "dashboard-port")}
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1",
           "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--include-dashboard", "false",
           "--temp-dir", temp_dir, "--num-cpus", "1", "--disable-usage-stats",
           *[x for kv in ports.items() for x in kv]]
    proc = subprocess.run(cmd, env=env(RAY_AUTH_MODE="token"), capture_output=True, text=True, timeout=180)
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        yield f"127.0.0.1:{gcs}"
    finally:
        _stop_cluster(temp_dir)


_PROBE = """
import sys
from orchestrator.cluster import enable_token_auth_if_available
from orchestrator.ray_probe import RayUnreachable, probe
enable_token_auth_if_available()  # what `adapmtl run --address` does first
try:
    probe(sys.argv[1])
except RayUnreachable as exc:
    print(exc)
    sys.exit(2)
print("OK")
"""


@pytest.mark.integration
@pytest.mark.parametrize("token", ["ours", "wrong", "missing"])
def test_a_wrong_or_missing_token_is_named_in_one_line(tmp_path, token_cluster, token):
    envkw: dict[str, str] = {}
    if token == "wrong":
        envkw = {"RAY_AUTH_TOKEN": "0" * 32}
    elif token == "missing":
        (tmp_path / "home").mkdir()
        envkw = {"HOME": str(tmp_path / "home")}  # no ~/.ray/auth_token there
    e = env(**envkw)
    e.pop("RAY_AUTH_MODE", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _PROBE, token_cluster], env=e, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)
    out = proc.stdout.strip()
    expected = {"ours": "OK",
                "wrong": f"cannot connect to Ray at {token_cluster}: authentication failed: the cluster rejected "
                         "our token",
                "missing": f"cannot connect to Ray at {token_cluster}: authentication failed: the cluster "
                           "requires a token and none was found"}[token]
    assert out.startswith(expected) and len(out.splitlines()) == 1, (out, proc.stderr[-2000:])
    assert proc.returncode == (0 if token == "ours" else 2)
    assert time.monotonic() - t0 < 60


_HOLD = """
import os, sys, time
os.environ["RAY_AUTH_MODE"] = "token"
import ray
ray.init(address=sys.argv[1], logging_level="WARNING", log_to_driver=False)
from orchestrator.sweep_lock import ClusterLock, SweepBusy
try:
    lock = ClusterLock("shared")
except SweepBusy as exc:
    print("BUSY", exc, flush=True)
    sys.exit(3)
print("HELD", os.getpid(), flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.integration
def test_the_cluster_sweep_lock_refuses_a_second_driver_and_dies_with_the_first(tmp_path, token_cluster):
    """Drivers on other machines share no sweep dir: the named actor on the cluster is their lock."""
    def hold(seconds: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _HOLD, token_cluster, str(seconds)], env=env(),
                                cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    first = hold(300)
    try:
        line = first.stdout.readline()
        assert line.startswith("HELD"), line
        second = hold(0)
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 3, out
        assert f"sweep shared is already being run on this cluster by pid {first.pid} on {socket.gethostname()}" \
            in out, out
    finally:
        first.kill()  # SIGKILL: no cleanup code runs; the cluster frees the name with the dead driver's job
        first.wait()
    deadline = time.monotonic() + 60
    while True:
        third = hold(0)
        out, _ = third.communicate(timeout=120)
        if third.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert out.startswith("HELD"), out


# -- what a SIGKILLed driver leaves behind -----------------------------------------------------------
def test_only_provably_dead_drivers_leftovers_are_cleaned(tmp_path):
    from orchestrator import leftovers

    def temp(name: str, owner: dict | None) -> Path:
        d = tmp_path / f"{leftovers.TEMP_PREFIX}{name}"
        (d / "logs").mkdir(parents=True)
        if owner is not None:
            (d / leftovers.OWNER_FILE).write_text(json.dumps(owner))
        return d

    dead = subprocess.Popen(["true"])
    dead.wait()
    me = {"pid": os.getpid(), "start_ticks": leftovers._start_ticks(os.getpid()),
          "boot_id": leftovers._boot_id(), "host": socket.gethostname()}
    dead_dir = temp("dead", {**me, "pid": dead.pid, "start_ticks": 1})
    reused_dir = temp("reused", {**me, "start_ticks": -1})  # our pid, but another process's start time
    live_dir = temp("live", me)
    unowned_dir = temp("unowned", None)
    other_host_dir = temp("elsewhere", {**me, "pid": dead.pid, "host": "another-host"})
    # a leftover agent: holds a log file of the dead driver's dir open, under a name that does not say so
    agent = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'a'); time.sleep(120)",
                              str(dead_dir / "logs" / "agent.out")])
    bystander = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'a'); "
                                  "time.sleep(120)", str(live_dir / "logs" / "agent.out")])
    try:
        wait_for(lambda: (dead_dir / "logs" / "agent.out").exists() and (live_dir / "logs" / "agent.out").exists(),
                 30, "the agents to open their logs")
        time.sleep(0.5)
        cleaned = leftovers.clean_dead_drivers(tmp_path)
        assert sorted(Path(c.temp_dir).name for c in cleaned) == [dead_dir.name, reused_dir.name]
        assert next(c for c in cleaned if c.temp_dir == str(dead_dir)).processes == 1
        assert agent.wait(timeout=15) is not None  # stopped
        assert not dead_dir.exists() and not reused_dir.exists()
        assert live_dir.exists() and unowned_dir.exists() and other_host_dir.exists()
        assert bystander.poll() is None  # a live driver's process is never touched
    finally:
        for p in (agent, bystander):
            p.kill()
            p.wait()
