"""MLflow runs → one tidy DataFrame (one row per run), cached as Parquet.

Why a cache: a paper is written by re-running ``adapmtl table`` many times on a sweep that no longer
changes. The cache is keyed by a *fingerprint* of the runs' last update (run count, latest start/end and
metric timestamps, tag/param volume); when nothing changed, the second call reads one Parquet file and never
imports MLflow. For SQL stores (the sqlite default, Postgres, MySQL) the fingerprint is one aggregate query
on MLflow's tables; for other stores (an HTTP tracking server, file store) it is two tiny ``search_runs``
calls (latest start/end time) plus the running runs, which does not notice a run deleted without other
changes — pass ``use_cache=False`` (``--no-cache``) then.

Cold reads: for SQL stores without a filter string, four set-oriented SELECTs on MLflow's ``runs``, ``tags``,
``params`` and ``latest_metrics`` tables (what ``search_runs`` itself reads), pivoted by pandas: ~20x faster
than materialising 200k SQLAlchemy ORM objects (measured: 2,000 runs in ~0.5 s vs 6–10 s on 2 shared
cores). Every other case — filter strings, HTTP/file stores, ``fast_sql=False`` — uses
``MlflowClient.search_runs`` in pages of ``PAGE_SIZE`` (never one ``get_run`` per run). A test asserts that
both paths give the identical frame, so an MLflow schema change is caught rather than misread.
Step histories (allocation / β plots) are fetched separately, only for the runs a plot needs.

Columns: ``run_id, experiment_id, run_name, run_status, start_time, end_time`` (ms), the identity tags of
DESIGN §3.6 as plain columns (``target_sparsity`` float, ``seed`` nullable int), ``variant``, and then
``tags.<k>`` (other tags), ``params.<k>`` (flattened config, strings), ``metrics.<k>`` (latest values).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from results import schema as S

TAG_COL = "tags."
PARAM_COL = "params."
METRIC_COL = "metrics."
INFO_COLUMNS: tuple[str, ...] = ("run_id", "experiment_id", "run_name", "run_status", "start_time", "end_time")
#: identity tags promoted to plain columns (plus the optional variant label)
PLAIN_TAGS: tuple[str, ...] = (*S.IDENTITY_TAGS, S.TAG_VARIANT)
PAGE_SIZE = 5000
CACHE_FORMAT = "adapmtl-results-1"
CACHE_DIR_ENV = "ADAPMTL_CACHE_DIR"
_FINGERPRINT_META = b"adapmtl.fingerprint"


class CollectError(ValueError):
    """A store/experiment problem worth one clear line (missing store, unknown sweep)."""


def metric_col(key: str) -> str:
    """Column of a metric key in the collected frame (``metrics.test/normal/angle_mean``)."""
    return f"{METRIC_COL}{key}"


def param_col(key: str) -> str:
    return f"{PARAM_COL}{key}"


# -- public entry point --------------------------------------------------------------------------------
def collect(
    sweep: str | None = None,
    *,
    tracking_uri: str | None = None,
    filter_string: str | None = None,
    experiment_names: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    fast_sql: bool = True,
) -> pd.DataFrame:
    """One row per run of a sweep (experiment ``sweep``), or of ``experiment_names`` / all experiments,
    optionally narrowed by an MLflow ``filter_string`` (``"tags.method = 'snip'"``)."""
    uri = S.resolve_tracking_uri(tracking_uri)
    names = [sweep] if sweep else list(experiment_names or [])
    source = _SqlSource(uri) if _is_sql(uri) else _ClientSource(uri)
    exp_ids = source.experiment_ids(names)
    if not exp_ids:
        return _empty_frame()
    cache_file = _cache_file(uri, exp_ids, filter_string, cache_dir)
    fingerprint = source.fingerprint(exp_ids) if use_cache else None
    if fingerprint is not None and cache_file.exists():
        cached = _read_cache(cache_file, fingerprint)
        if cached is not None:
            return cached
    if fast_sql and not filter_string and isinstance(source, _SqlSource):
        df = source.read_frame(exp_ids)
    else:
        df = runs_to_frame(_search_all(uri, exp_ids, filter_string))
    if fingerprint is not None:
        _write_cache(cache_file, df, fingerprint)
    return df


def _search_all(uri: str, exp_ids: list[str], filter_string: str | None) -> list[Any]:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs: list[Any] = []
    token = None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # ~1.5x: the ORM allocates ~100 objects per run and never forms cycles worth collecting
    try:
        while True:
            page = client.search_runs(exp_ids, filter_string or "", run_view_type=ViewType.ACTIVE_ONLY,
                                      max_results=PAGE_SIZE, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs
    finally:
        if gc_was_enabled:
            gc.enable()


# -- frame building ------------------------------------------------------------------------------------
def runs_to_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """``mlflow.entities.Run`` objects → the tidy frame (also used for runs fetched elsewhere)."""
    records = []
    for run in runs:
        info, data = run.info, run.data
        rec: dict[str, Any] = {
            "run_id": info.run_id, "experiment_id": info.experiment_id, "run_name": info.run_name,
            "run_status": info.status, "start_time": info.start_time, "end_time": info.end_time,
        }
        for k, v in data.tags.items():
            rec[k if k in PLAIN_TAGS else TAG_COL + k] = v
        for k, v in data.params.items():
            rec[PARAM_COL + k] = v
        for k, v in data.metrics.items():
            rec[METRIC_COL + k] = v
        records.append(rec)
    if not records:
        return _empty_frame()
    return _normalise(pd.DataFrame.from_records(records))


def _empty_frame() -> pd.DataFrame:
    return _normalise(pd.DataFrame(columns=[*INFO_COLUMNS, *PLAIN_TAGS]))


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Fixed column order and dtypes, so tables and the cache see the same frame."""
    for col in (*INFO_COLUMNS, *PLAIN_TAGS):
        if col not in df.columns:
            df[col] = None
    df[S.TAG_TARGET_SPARSITY] = pd.to_numeric(df[S.TAG_TARGET_SPARSITY], errors="coerce").astype("float64")
    df[S.TAG_SEED] = pd.to_numeric(df[S.TAG_SEED], errors="coerce").astype("Int64")
    for col in ("start_time", "end_time"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    rest = sorted(c for c in df.columns if c not in INFO_COLUMNS and c not in PLAIN_TAGS)
    text = [c for c in ("run_id", "experiment_id", "run_name", "run_status", *PLAIN_TAGS, *rest)
            if c not in (S.TAG_TARGET_SPARSITY, S.TAG_SEED) and not c.startswith(METRIC_COL)]
    metric_cols = [c for c in rest if c.startswith(METRIC_COL)]
    df = df[[*INFO_COLUMNS, *PLAIN_TAGS, *rest]].copy()
    conv = {c: "str" for c in text} | {c: "float64" for c in metric_cols}
    df = df.astype(conv)
    return df.sort_values(["start_time", "run_id"], na_position="last", kind="stable").reset_index(drop=True)


# -- step series (plots) -------------------------------------------------------------------------------
def metric_histories(run_ids: Sequence[str], keys: Sequence[str], *, tracking_uri: str | None = None,
                     prefixes: Sequence[str] = ()) -> pd.DataFrame:
    """Long frame ``run_id, key, step, value, timestamp`` for the given runs and metric keys.

    ``prefixes`` adds every logged key of each run starting with one of them (``sparsity/`` → all
    components), found from the run's latest metrics. Only the runs a plot needs are read.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(S.resolve_tracking_uri(tracking_uri))
    rows: list[tuple[str, str, int, float, int]] = []
    for run_id in run_ids:
        wanted = list(keys)
        if prefixes:
            logged = client.get_run(run_id).data.metrics
            wanted += sorted(k for k in logged if any(k.startswith(p) for p in prefixes) and k not in wanted)
        for key in wanted:
            for m in client.get_metric_history(run_id, key):
                rows.append((run_id, key, m.step, m.value, m.timestamp))
    df = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])
    return df.sort_values(["run_id", "key", "step", "timestamp"], kind="stable").reset_index(drop=True)


# -- cache ---------------------------------------------------------------------------------------------
def default_cache_dir(uri: str) -> Path:
    """``$ADAPMTL_CACHE_DIR``, else next to a sqlite store (``<db dir>/cache/results``), else ~/.cache."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    db = S.sqlite_path(uri)
    if db is not None:
        return db.resolve().parent / "cache" / "results"
    return Path.home() / ".cache" / "adapmtl" / "results"


def _cache_file(uri: str, exp_ids: list[str], filter_string: str | None, cache_dir: Any) -> Path:
    key = json.dumps([CACHE_FORMAT, uri, sorted(exp_ids), filter_string or ""])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return Path(cache_dir) / f"runs-{digest}.parquet" if cache_dir else default_cache_dir(uri) / f"runs-{digest}.parquet"


def _read_cache(path: Path, fingerprint: str) -> pd.DataFrame | None:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        if meta.get(_FINGERPRINT_META, b"").decode() != fingerprint:
            return None
        return pq.read_table(path).to_pandas()
    except (OSError, ValueError):  # unreadable/partial file: rebuild it
        return None


def _write_cache(path: Path, df: pd.DataFrame, fingerprint: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _FINGERPRINT_META: fingerprint.encode()})
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file, never half of one


# -- stores --------------------------------------------------------------------------------------------
_SQL_SCHEMES = ("sqlite:", "postgresql", "mysql", "mssql")


def _is_sql(uri: str) -> bool:
    return uri.startswith(_SQL_SCHEMES)


class _SqlSource:
    """Reads experiment ids and the fingerprint straight from MLflow's SQL tables (no MLflow import).

    A sqlite store is read with the standard library's ``sqlite3``, read-only (importing SQLAlchemy was
    ~20 % of a cached ``adapmtl table``, benchmarks/RESULTS.md Q7); other SQL stores through SQLAlchemy.
    """

    def __init__(self, uri: str) -> None:
        db = S.sqlite_path(uri)
        if db is not None and not db.exists():
            raise CollectError(f"no MLflow store at {db} (set --tracking-uri or MLFLOW_TRACKING_URI)")
        self.uri = uri
        self.sqlite = db
        if db is None:
            from sqlalchemy import create_engine

            self.engine = create_engine(uri)

    def _query(self, sql: str, **params: Any) -> list[Any]:
        if self.sqlite is not None:
            return self._sqlite_query(sql, params)
        from sqlalchemy import bindparam, text

        stmt = text(sql)
        for name, value in params.items():
            if isinstance(value, (list, tuple)):
                stmt = stmt.bindparams(bindparam(name, expanding=True))
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(stmt, params).fetchall()]

    def _sqlite_query(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """The same ``:name`` SQL, list parameters expanded to ``(:name_0, :name_1, ...)`` as SQLAlchemy's
        expanding bind parameters do."""
        import re
        import sqlite3

        flat: dict[str, Any] = {}
        for name, value in params.items():
            if isinstance(value, (list, tuple)):
                names = [f"{name}_{i}" for i in range(len(value))]
                flat.update(zip(names, value, strict=True))
                sql = re.sub(rf":{name}\b", "(" + ", ".join(f":{n}" for n in names) + ")", sql)
            else:
                flat[name] = value
        conn = sqlite3.connect(f"{self.sqlite.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return [tuple(r) for r in conn.execute(sql, flat).fetchall()]
        finally:
            conn.close()

    def experiment_ids(self, names: Sequence[str]) -> list[str]:
        try:
            rows = self._query("SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'")
        except Exception as exc:  # not an MLflow database
            raise CollectError(f"cannot read MLflow experiments from {self.uri}: {exc.__class__.__name__}") from None
        by_name = {name: str(eid) for eid, name in rows}
        return _pick(by_name, names)

    def read_frame(self, exp_ids: list[str]) -> pd.DataFrame:
        """The collected frame straight from MLflow's tables (active runs only, like ``search_runs``)."""
        ids = [int(e) for e in exp_ids]
        active = "SELECT run_uuid FROM runs WHERE experiment_id IN :ids AND lifecycle_stage = 'active'"
        runs = pd.DataFrame(
            self._query("SELECT run_uuid, experiment_id, name, status, start_time, end_time FROM runs "
                        "WHERE experiment_id IN :ids AND lifecycle_stage = 'active'", ids=ids),
            columns=["run_id", "experiment_id", "run_name", "run_status", "start_time", "end_time"])
        if runs.empty:
            return _empty_frame()
        runs["experiment_id"] = runs["experiment_id"].astype(str)
        parts = [runs.set_index("run_id")]
        for table, extra in (("tags", ""), ("params", ""), ("latest_metrics", ", is_nan")):
            long = pd.DataFrame(self._query(f"SELECT run_uuid, key, value{extra} FROM {table} "
                                            f"WHERE run_uuid IN ({active})", ids=ids))
            if long.empty:
                continue
            long.columns = ["run_id", "key", "value", *(["is_nan"] if extra else [])]
            if table == "latest_metrics":
                long["value"] = long["value"].astype("float64").where(~long["is_nan"].astype(bool))
                long["key"] = METRIC_COL + long["key"]
            elif table == "params":
                long["key"] = PARAM_COL + long["key"]
            else:
                long["key"] = long["key"].where(long["key"].isin(PLAIN_TAGS), TAG_COL + long["key"])
            parts.append(long.pivot(index="run_id", columns="key", values="value"))
        df = pd.concat(parts, axis=1).reset_index(names="run_id")
        df.columns.name = None
        return _normalise(df)

    def fingerprint(self, exp_ids: list[str]) -> str:
        ids = [int(e) for e in exp_ids]
        sub = "SELECT run_uuid FROM runs WHERE experiment_id IN :ids"
        runs = self._query(
            "SELECT COUNT(*), MAX(start_time), MAX(end_time), "
            "SUM(CASE WHEN status = 'RUNNING' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN lifecycle_stage = 'deleted' THEN 1 ELSE 0 END) FROM runs WHERE experiment_id IN :ids",
            ids=ids)
        metrics = self._query(f"SELECT COUNT(*), MAX(timestamp), SUM(value) FROM latest_metrics WHERE run_uuid IN ({sub})",
                              ids=ids)
        tags = self._query(f"SELECT COUNT(*), SUM(LENGTH(value)) FROM tags WHERE run_uuid IN ({sub})", ids=ids)
        params = self._query(f"SELECT COUNT(*), SUM(LENGTH(value)) FROM params WHERE run_uuid IN ({sub})", ids=ids)
        return json.dumps([CACHE_FORMAT, *map(list, (runs[0], metrics[0], tags[0], params[0]))], default=str)


class _ClientSource:
    """Any other store: experiment ids and a coarse fingerprint through the MLflow client."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)

    def experiment_ids(self, names: Sequence[str]) -> list[str]:
        by_name = {e.name: e.experiment_id for e in self.client.search_experiments()}
        return _pick(by_name, names)

    def fingerprint(self, exp_ids: list[str]) -> str:
        parts: list[Any] = [CACHE_FORMAT]
        for order in ("attributes.start_time DESC", "attributes.end_time DESC"):
            page = self.client.search_runs(exp_ids, "", max_results=1, order_by=[order])
            parts.append([(r.info.run_id, r.info.start_time, r.info.end_time) for r in page])
        running = self.client.search_runs(exp_ids, "attributes.status = 'RUNNING'", max_results=PAGE_SIZE)
        parts.append(sorted((r.info.run_id, sum(r.data.metrics.values()), len(r.data.metrics))
                            for r in running))
        return json.dumps(parts, default=str)


def _pick(by_name: dict[str, str], names: Sequence[str]) -> list[str]:
    if not names:
        return sorted(by_name.values())
    missing = [n for n in names if n not in by_name]
    if missing:
        known = ", ".join(sorted(by_name)) or "none"
        raise CollectError(f"no MLflow experiment named {missing[0]!r} (known: {known})")
    return [by_name[n] for n in names]
