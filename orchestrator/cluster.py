"""Where the sweep runs: an embedded local Ray (default), an existing cluster, or a Ray Job.

Two Ray instances on one machine (a test's ``ray start`` cluster and an embedded ``ray.init()``) confuse each
other unless every start names its address: the embedded instance is therefore always started with
``address="local"``, its own short temp dir (and its own dashboard port when it has one), and never by auto-detection.

Token authentication (on by default for local clusters in recent Ray): Ray auto-enables it only when it
finds the cluster itself; for an explicit address or a Jobs client we enable it whenever a token is
available (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``), unless ``RAY_AUTH_MODE`` is set explicitly.

Loopback only: the embedded Ray is one node that no other machine needs to reach, so every server of it
(GCS, raylet, object manager, workers' and the driver's core-worker gRPC, dashboard agent, runtime-env agent,
metrics) listens on 127.0.0.1. Ray 2.60 binds those to the node IP, and ``ray.init(_node_ip_address=
"127.0.0.1")`` alone is not enough: ``ray.init`` passes a loopback address through
``services.resolve_ip_for_localhost``, which replaces it with the host's routable address unless Ray's
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` switch (``ray_constants.ENABLE_RAY_CLUSTER``) is off, that is unless
multi-node clusters are disabled. We turn it off for the start of the embedded Ray (the env var is
inherited by the processes Ray spawns, the module constant covers a ``ray`` imported earlier) and pass
127.0.0.1. Only an explicit ``--address`` cluster listens beyond loopback, as its operator configured it.

Before ``ray.init(address=...)`` the address is probed with one bounded gRPC call (``orchestrator.ray_probe``):
Ray's own retries take minutes on a port that is open but not Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

LOOPBACK = "127.0.0.1"
#: Ray's switch for multi-node clusters (``ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR``); off = loopback node IP.
_CLUSTERS_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Where embedded Rays get their (short: Unix socket paths are limited) temp dirs.
TEMP_ROOT = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
#: Source packages a Ray Job needs (the runtime_env working_dir is staged from these, not the whole repo).
PACKAGES = ("orchestrator", "trainers", "baselines", "search_spaces", "results")
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def enable_token_auth_if_available() -> bool:
    """Use token auth when a token exists and the user did not choose a mode (returns whether it is on)."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or (Path.home() / ".ray" / "auth_token").is_file()
    if not has_token:
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # refresh Ray's cached config in case ray was imported before the variable was set
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
    except Exception:
        pass
    return True


@dataclass
class Session:
    """A live connection; ``close()`` shuts down what we started (and only that)."""

    address: str
    embedded: bool
    num_cpus: float
    num_gpus: float
    temp_dir: str | None = None

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self.temp_dir and not os.environ.get("ADAPMTL_KEEP_RAY_TMP"):
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        elif self.temp_dir:  # kept for debugging: without an owner it is never cleaned up automatically
            from orchestrator.leftovers import OWNER_FILE

            Path(self.temp_dir, OWNER_FILE).unlink(missing_ok=True)


def resolve_address(cli_address: str | None, spec_address: str | None) -> str | None:
    """``--address`` > spec ``ray.address`` > ``RAY_ADDRESS`` (set inside a Ray Job) > embedded (None)."""
    for a in (cli_address, spec_address, os.environ.get("RAY_ADDRESS")):
        if a and a != "local":
            return a
    return None


class _DropDefaultTokenWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


@contextlib.contextmanager
def _quiet_default_token_warning() -> Iterator[None]:
    """Drop only Ray's "token authentication is enabled (by default)" notice during ``ray.init``."""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    flt = _DropDefaultTokenWarning()
    log.addFilter(flt)
    try:
        yield
    finally:
        log.removeFilter(flt)


def connect(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None, *,
            dashboard: bool = False) -> Session:
    """Connect to ``address`` or start an embedded local Ray sized to this machine.

    The embedded Ray starts without its dashboard unless asked (spec ``ray.dashboard``): the dashboard and
    its agent are two more Python processes competing for a small machine's cores (bench Q3); a sweep's
    progress line and ``adapmtl status`` do not need it.
    """
    import ray

    from orchestrator import leftovers, ray_probe

    for c in leftovers.clean_dead_drivers(TEMP_ROOT):
        print(f"adapmtl: cleaned up after a dead driver (pid {c.owner_pid}): {c.processes} leftover Ray "
              f"process(es), {c.temp_dir}", file=sys.stderr, flush=True)
    env_vars = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY",
                                           "ADAPMTL_FAULT_KILL_AT_STEP", "OMP_NUM_THREADS") if k in os.environ}
    common: dict[str, Any] = dict(log_to_driver=bool(os.environ.get("ADAPMTL_RAY_LOGS")),
                                  logging_level="WARNING", ignore_reinit_error=True)
    if address is None or address == "local":
        temp_dir = tempfile.mkdtemp(prefix=leftovers.TEMP_PREFIX, dir=TEMP_ROOT)
        leftovers.write_owner(temp_dir)
        cpus = num_cpus or os.cpu_count() or 1
        # Token auth stays on (Ray's default for a new local cluster: it creates ~/.ray/auth_token if
        # missing). Ray warns about that default on every start; the warning is dropped, the behaviour kept.
        # Setting RAY_AUTH_MODE here instead would not do: Ray caches its config at import, so the driver
        # would skip creating the token while the GCS it spawns demands one (fails on a fresh machine).
        try:
            with loopback_only(), _quiet_default_token_warning():
                ray.init(address="local", num_cpus=cpus, num_gpus=num_gpus, _temp_dir=temp_dir,
                         _node_ip_address=LOOPBACK, include_dashboard=dashboard,
                         **(dict(dashboard_host=LOOPBACK, dashboard_port=free_port()) if dashboard else {}),
                         runtime_env={"env_vars": env_vars} if env_vars else None, **common)
        except BaseException:
            if ray.is_initialized():
                ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        res = ray.cluster_resources()
        return Session(address=ray.get_runtime_context().gcs_address, embedded=True,
                       num_cpus=res.get("CPU", cpus), num_gpus=res.get("GPU", 0), temp_dir=temp_dir)
    if address != "auto":
        enable_token_auth_if_available()
    if address != "auto":  # "auto" = inside a Ray Job: Ray itself set RAY_ADDRESS (and the credentials)
        ray_probe.probe(address)  # one bounded call: a wrong port, token or host fails here in seconds
    try:
        ray.init(address=address, **common)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"cannot connect to Ray at {address}: {first}") from None
    res = ray.cluster_resources()
    return Session(address=address, embedded=False, num_cpus=res.get("CPU", 0), num_gpus=res.get("GPU", 0))


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While an embedded Ray starts: let a loopback node IP through ``ray.init`` (see the module docstring)."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_CLUSTERS_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTERS_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_CLUSTERS_ENV, None)
        else:
            os.environ[_CLUSTERS_ENV] = saved_env


# -- Ray Jobs ------------------------------------------------------------------------------------------
def stage_working_dir(spec_text: str, dest: Path) -> Path:
    """A minimal working_dir for the job: the source packages plus the spec (no venv, no results)."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pt", ".adapmtl", "*.db")
    for pkg in PACKAGES:
        src = REPO_ROOT / pkg
        if src.is_dir():
            shutil.copytree(src, dest / pkg, ignore=ignore, dirs_exist_ok=True)
    if (REPO_ROOT / "examples").is_dir():
        shutil.copytree(REPO_ROOT / "examples", dest / "examples", ignore=ignore, dirs_exist_ok=True)
    (dest / "sweep.yaml").write_text(spec_text)
    return dest


def job_client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    enable_token_auth_if_available()
    try:
        return JobSubmissionClient(address)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"cannot reach the Ray Jobs API at {address}: {first}") from None


def submit(spec_text: str, address: str, *, tracking_uri: str, workdir: str, python: str | None = None,
           extra_args: list[str] | None = None) -> tuple[str, Any]:
    """Submit ``adapmtl run`` of the spec as a Ray Job; returns (job id, client).

    The entrypoint uses an explicit interpreter: ``ray job submit`` would otherwise run the head node's
    ``python`` on PATH, which need not have this project (or Ray) installed. ``sys.executable`` is right for a
    local head started from this environment; pass ``python`` for a remote cluster.
    """
    client = job_client(address)
    env_vars = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
                "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    for k in ("RAY_AUTH_MODE", "OMP_NUM_THREADS", "ADAPMTL_FAULT_KILL_AT_STEP"):
        if k in os.environ:
            env_vars[k] = os.environ[k]
    staging = Path(tempfile.mkdtemp(prefix="adapmtl-job-"))
    try:
        stage_working_dir(spec_text, staging)
        cmd = [python or sys.executable, "-m", "orchestrator.cli", "run", "sweep.yaml", "--address", "auto",
               "--tracking-uri", tracking_uri, "--workdir", workdir, *(extra_args or [])]
        job_id = client.submit_job(entrypoint=shlex.join(cmd),
                                   runtime_env={"working_dir": str(staging), "env_vars": env_vars})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return job_id, client


def follow(client: Any, job_id: str, *, out: Any = None, poll_s: float = 2.0) -> str:
    """Print the job's logs as they grow until it ends; returns the final status name."""
    from ray.job_submission import JobStatus

    out = out or sys.stdout
    printed = 0
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > printed:
            out.write(logs[printed:])
            out.flush()
            printed = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return str(status.value if hasattr(status, "value") else status)
        time.sleep(poll_s)
