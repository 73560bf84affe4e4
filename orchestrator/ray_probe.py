"""Is there a Ray cluster at this address, and will it let us in? One bounded gRPC call says, before ray.init.

Why: ``ray.init(address=...)`` on a port that is open but not Ray retries for minutes (a ``GcsClient`` waits
40 s per attempt, and the driver makes up to 20 attempts), and a missing token gives 20 s of retries and a
message that does not mention authentication. One unary call with a deadline tells the cases apart:

* nothing listens / no route → unreachable;
* an HTTP/1 server, or a gRPC server without Ray's service, or no answer → not a Ray GCS (or Ray Client);
* ``UNAUTHENTICATED`` → the cluster wants a token: ours is missing, or not the cluster's.

The call is ``NodeInfoGcsService.GetClusterId`` for a GCS address (what every driver asks first) and
``RayletDriver.ClusterInfo(PING)`` for a ``ray://`` Ray Client address (what ``ray.util.client`` pings). The
channel comes from Ray's own ``init_grpc_channel``, so TLS (``RAY_USE_TLS``) and token headers are the ones
``ray.init`` would send.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

#: Seconds the probe may take (TCP connect + one call).
PROBE_TIMEOUT_S = 5.0


class RayUnreachable(ConnectionError):
    """No usable Ray cluster at the address; the message is one line naming the cause."""


def _split(address: str) -> tuple[str, bool]:
    """``ray://host:port`` → (``host:port``, True); ``host:port`` → (``host:port``, False)."""
    if address.startswith("ray://"):
        return address[len("ray://"):], True
    return address.split("://", 1)[-1], False


def _has_token() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or (Path.home() / ".ray" / "auth_token").is_file() or \
        bool(os.environ.get("RAY_AUTH_TOKEN_PATH") and Path(os.environ["RAY_AUTH_TOKEN_PATH"]).is_file())


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`RayUnreachable` (one line) unless a Ray GCS / Ray Client server answers at ``address``."""
    target, client = _split(address)
    host, _, port_text = target.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise RayUnreachable(f"Ray address {address!r} has no port (expected host:port)") from None
    what = "Ray Client server" if client else "Ray cluster (GCS)"
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            pass
    except OSError as exc:
        raise RayUnreachable(f"cannot connect to Ray at {address}: unreachable ({exc.strerror or exc})") from None

    import grpc
    from ray._private.grpc_utils import init_grpc_channel

    channel = init_grpc_channel(target)
    try:
        if client:
            from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

            ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(
                ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING), timeout=timeout)
        else:
            from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        raise RayUnreachable(f"cannot connect to Ray at {address}: {_cause(exc, what, timeout)}") from None
    finally:
        channel.close()


def _cause(exc: Any, what: str, timeout: float) -> str:
    import grpc

    code, details = exc.code(), (exc.details() or "").strip()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        if _has_token():
            return ("authentication failed: the cluster rejected our token (RAY_AUTH_TOKEN / ~/.ray/auth_token "
                    "is not this cluster's)")
        return ("authentication failed: the cluster requires a token and none was found (set RAY_AUTH_TOKEN or "
                "copy the cluster's ~/.ray/auth_token)")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"a gRPC server answers there, but it is not a {what}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"not a {what}: the port is open but nothing answered Ray's handshake within {timeout:g} s"
    if "http1.x" in details or "Failed parsing HTTP/2" in details:
        return f"not a {what}: an HTTP/1 server answers there (a dashboard or Jobs address is http://HOST:8265)"
    if "Connection refused" in details:
        return "unreachable (connection refused)"
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"not a {what} (no gRPC answer: {details.splitlines()[0][:160] if details else 'unavailable'})"
    return f"{code.name}: {details.splitlines()[0][:160] if details else 'no details'}"
