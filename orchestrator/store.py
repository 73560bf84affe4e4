"""The MLflow store before anything writes to it: a bounded reachability probe for every command, and the
serialized first creation of a local sqlite store.

Why a probe of our own: ``MlflowClient`` retries a dead server with exponential back-off (7 retries, ~4 min
before the first error), so ``adapmtl train --tracking-uri http://127.0.0.1:9`` used to take 264 s to fail.
One request without retries and with a timeout says in seconds which of "nothing listens", "no answer",
"not an MLflow server" or "authentication refused" it is.

Why a lock: two processes opening a fresh sqlite store at once both run MLflow's schema migration and one
of them fails (``table _alembic_tmp_latest_metrics already exists``). The first open of a store in a
process happens under an exclusive ``flock`` on ``<db>.lock`` next to the database, so the second process
waits for the first one's migration and then finds the schema in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

#: Seconds one probe request may take (connect + answer).
PROBE_TIMEOUT_S = 5.0
#: The endpoint every MLflow tracking server answers (also behind basic auth): a one-result search.
PROBE_ENDPOINT = "/api/2.0/mlflow/experiments/search"


class StoreUnreachable(ConnectionError):
    """The tracking store cannot be used; the message is one line naming the URI and the cause."""


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def creation_lock(db: Path) -> Iterator[None]:
    """Exclusive lock around opening (and so possibly creating/migrating) the sqlite store ``db``."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def probe(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail in one line, within ~``timeout`` seconds for a server, when the store at ``uri`` is unusable.

    A local sqlite store is created (schema migrated) here, once, under :func:`creation_lock`.
    """
    if uri.startswith(("http://", "https://")):
        _probe_server(uri, timeout)
        return
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial tables..."
    db = sqlite_path(uri)
    lock = creation_lock(db) if db is not None else contextlib.nullcontext()
    try:
        with lock:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnreachable(f"MLflow tracking store {uri} is unreachable: {first[:200]}") from None


def _probe_server(uri: str, timeout: float) -> None:
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    def fail(why: str) -> StoreUnreachable:
        return StoreUnreachable(f"MLflow tracking URI {uri} is unreachable: {why}")

    try:
        response = http_request(get_default_host_creds(uri), PROBE_ENDPOINT, "GET", max_retries=0,
                                backoff_factor=0, timeout=timeout, raise_on_status=False,
                                params={"max_results": 1})
    except Exception as exc:  # MLflow wraps requests' errors in an MlflowException whose text names the cause
        raise fail(_cause(exc, timeout)) from None
    if response.status_code in (401, 403):
        raise StoreUnreachable(f"MLflow tracking URI {uri} refused authentication (HTTP {response.status_code}): "
                               "set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        raise fail(f"it answers HTTP {response.status_code} but is not an MLflow tracking server")


def _cause(exc: Exception, timeout: float) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for needles, why in ((("Read timed out", "ReadTimeout", "timed out"), f"no answer within {timeout:g} s"),
                         (("Connection refused",), "connection refused (nothing listens there)"),
                         (("Name or service not known", "nodename nor servname", "NameResolutionError"),
                          "unknown host"),
                         (("No route to host", "Network is unreachable"), "no route to host"),
                         (("Connection reset", "RemoteDisconnected", "BadStatusLine", "Connection aborted"),
                          "the server closed the connection without an HTTP answer (not an MLflow server?)"),
                         (("SSLError", "CERTIFICATE_VERIFY_FAILED"), "TLS handshake failed")):
        if any(n in text for n in needles):
            return why
    first = text.strip().splitlines()[0]
    return first[:200]
