"""Shared fixtures for the results tests: a real sqlite MLflow store written with the real client.

The store is built once per test session (module-level memo) because writing runs through MLflow costs
~50 ms each; tests only read it. Numbers are the paper's Table 1 (NYUv2, DeepLab-ResNet34) so the ΔT check
of METHODS_SPEC §7 runs on real tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from results import schema as S  # noqa: E402

SWEEP = "test-sweep"
METRICS = {
    "segment_semantic": ["miou", "pixel_acc"],
    "normal": ["angle_mean", "angle_median", "within_11.25", "within_22.5", "within_30"],
    "depth_zbuffer": ["abs_err", "rel_err", "delta_1", "delta_2", "delta_3"],
}
DIRECTIONS = {
    "segment_semantic": {"miou": "higher", "pixel_acc": "higher"},
    "normal": {"angle_mean": "lower", "angle_median": "lower", "within_11.25": "higher",
               "within_22.5": "higher", "within_30": "higher"},
    "depth_zbuffer": {"abs_err": "lower", "rel_err": "lower", "delta_1": "higher", "delta_2": "higher",
                      "delta_3": "higher"},
}
# paper Table 1 rows, metric values in METRICS order
TABLE1 = {
    "dense": [25.54, 57.91, 17.11, 14.95, 36.35, 72.25, 85.44, 0.55, 0.22, 65.21, 89.87, 97.52],
    "snip": [24.09, 55.32, 16.94, 14.93, 36.17, 72.39, 86.98, 0.61, 0.23, 60.61, 87.88, 96.77],
    "adapmtl": [26.28, 58.29, 16.92, 14.91, 36.36, 72.97, 86.29, 0.55, 0.22, 65.39, 89.93, 97.58],
    "lth": [25.42, 57.98, 16.73, 15.08, 35.20, 72.35, 87.22, 0.57, 0.22, 60.93, 88.64, 96.20],
    "wo_thr": [25.59, 57.53, 17.26, 15.75, 36.21, 71.53, 85.91, 0.58, 0.22, 62.52, 87.12, 96.50],
}
TABLE1_SPARSITY = {  # backbone, S.S., S.N.P., D.E. heads (%)
    "snip": [85.46, 90.24, 92.28, 91.17], "lth": [78.32, 90.54, 95.21, 95.49],
    "wo_thr": [79.12, 39.37, 96.85, 95.74], "adapmtl": [71.74, 93.18, 99.26, 96.22],
}


def as_metrics(values: list[float]) -> dict[str, dict[str, float]]:
    it = iter(values)
    return {t: {m: next(it) for m in ms} for t, ms in METRICS.items()}


def scaled(values: list[float], factor: float) -> list[float]:
    return [round(v * factor, 4) for v in values]


def log_run(client: Any, exp_id: str, *, method: str, arch: str, seed: int, target: float | None,
            values: list[float] | None, sparsity: list[float] | None = None, val_dt: float | None = None,
            variant: str | None = None, params: dict[str, str] | None = None, role: str | None = None,
            histories: bool = False, finish: bool = True, directions_tag: bool = True) -> str:
    from mlflow.entities import Metric, Param, RunTag

    log_run.counter = getattr(log_run, "counter", 0) + 1
    ts = 1_700_000_000_000 + log_run.counter * 1000
    run = client.create_run(exp_id, start_time=ts, run_name=f"{method}-{arch}-{seed}")
    role = role or (S.ROLE_REFERENCE if method == "dense" else S.ROLE_TRIAL)
    tags = {S.TAG_SWEEP: SWEEP, S.TAG_METHOD: method, S.TAG_ARCH: arch, S.TAG_DATASET: "nyuv2",
            S.TAG_SEED: str(seed), S.TAG_ROLE: role, S.TAG_TRIAL_ID: f"t{log_run.counter}",
            S.TAG_GIT_SHA: "abc", S.TAG_STATUS: "finished", S.TAG_RUN_KEY: f"k{log_run.counter}"}
    if directions_tag:
        tags[S.TAG_DIRECTIONS] = S.directions_to_tag(DIRECTIONS)
    if target is not None:
        tags[S.TAG_TARGET_SPARSITY] = str(target)
    if variant:
        tags[S.TAG_VARIANT] = variant
    metrics: list[Metric] = []
    if values is not None:
        for t, ms in as_metrics(values).items():
            for m, v in ms.items():
                metrics.append(Metric(S.test_metric(t, m), v, ts, 100))
    comps = [S.BACKBONE] + [S.head(t) for t in METRICS]
    if sparsity is not None:
        for c, v in zip(comps, sparsity):
            metrics.append(Metric(S.final_sparsity(c), v / 100, ts, 100))
        metrics.append(Metric(S.final_sparsity(S.OVERALL), target or 0.0, ts, 100))
        metrics.append(Metric(S.FINAL_PARAMS_TOTAL, 200e6, ts, 100))
        metrics.append(Metric(S.FINAL_PARAMS_NONZERO, 200e6 * (1 - (target or 0)), ts, 100))
        metrics.append(Metric(S.FINAL_FLOPS_DENSE, 50e9, ts, 100))
        metrics.append(Metric(S.FINAL_FLOPS_SPARSE, 50e9 * (1 - (target or 0)), ts, 100))
    if val_dt is not None:
        metrics.append(Metric(S.val_delta_t(), val_dt, ts, 100))
    if histories:
        for step in range(0, 101, 25):
            for i, c in enumerate(comps):
                metrics.append(Metric(S.sparsity(c), (target or 0) * step / 100 * (1 + 0.01 * i), ts + step, step))
            for i, t in enumerate(METRICS):
                metrics.append(Metric(S.train_weight(t), 1.0 + 0.1 * i * step / 100, ts + step, step))
    all_params = {"method": method, "model.arch": arch, "seed": str(seed), "train.lr": "0.001"}
    all_params.update(params or {})
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in all_params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    if finish:
        client.set_terminated(run.info.run_id, end_time=ts + 500)
    return run.info.run_id


_STORE: dict[str, Any] = {}


def sweep_store(base: Path) -> dict[str, Any]:
    """The shared test sweep: returns {"uri", "ids": {name: run_id}} (built on first use)."""
    if _STORE:
        return _STORE
    from mlflow.tracking import MlflowClient

    base.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(base / 'mlflow.db').as_posix()}"
    client = MlflowClient(uri)
    exp = client.create_experiment(SWEEP)
    ids: dict[str, str] = {}
    A, B = "resnet34", "mobilenetv2"
    p_full = {"method.window": "400", "method.use_lambda": "true"}
    # dense references: A seeds 0 and 1 (seed 1 has a different mIoU), B seed 0
    ref1 = list(TABLE1["dense"])
    ref1[0] = 26.00
    ids["ref_A0"] = log_run(client, exp, method="dense", arch=A, seed=0, target=None, values=TABLE1["dense"],
                            sparsity=[0, 0, 0, 0])
    ids["ref_A1"] = log_run(client, exp, method="dense", arch=A, seed=1, target=None, values=ref1,
                            sparsity=[0, 0, 0, 0])
    ids["ref_B0"] = log_run(client, exp, method="dense", arch=B, seed=0, target=None,
                            values=scaled(TABLE1["dense"], 0.9), sparsity=[0, 0, 0, 0])
    # A @ 90 %
    ids["snip_A0"] = log_run(client, exp, method="snip", arch=A, seed=0, target=0.9, values=TABLE1["snip"],
                             sparsity=TABLE1_SPARSITY["snip"], val_dt=-5.0)
    ids["snip_A1"] = log_run(client, exp, method="snip", arch=A, seed=1, target=0.9, values=TABLE1["adapmtl"],
                             sparsity=TABLE1_SPARSITY["snip"], val_dt=-4.0)
    ids["lth_A0"] = log_run(client, exp, method="lth", arch=A, seed=0, target=0.9, values=TABLE1["lth"],
                            sparsity=TABLE1_SPARSITY["lth"], val_dt=-1.0)
    ids["adap_A0"] = log_run(client, exp, method="adapmtl", arch=A, seed=0, target=0.9, values=TABLE1["adapmtl"],
                             sparsity=TABLE1_SPARSITY["adapmtl"], val_dt=2.0, params=p_full, histories=True)
    # a worse-on-validation sample of the same group (must not be reported even though its test is better)
    ids["adap_A0_worse"] = log_run(client, exp, method="adapmtl", arch=A, seed=0, target=0.9,
                                   values=scaled(TABLE1["adapmtl"], 1.05), sparsity=TABLE1_SPARSITY["adapmtl"],
                                   val_dt=1.0, params=p_full)
    ids["adap_A1"] = log_run(client, exp, method="adapmtl", arch=A, seed=1, target=0.9, values=TABLE1["adapmtl"],
                             sparsity=TABLE1_SPARSITY["adapmtl"], val_dt=2.5, params=p_full, histories=True)
    ids["wo_A0"] = log_run(client, exp, method="adapmtl", arch=A, seed=0, target=0.9, values=TABLE1["wo_thr"],
                           sparsity=TABLE1_SPARSITY["wo_thr"], val_dt=0.0, variant="w/o adaptive thresholds",
                           params={"method.window": "400", "method.use_lambda": "true"})
    # A @ 50 %
    ids["snip_A0_50"] = log_run(client, exp, method="snip", arch=A, seed=0, target=0.5,
                                values=scaled(TABLE1["dense"], 1.0), sparsity=[50, 50, 50, 50], val_dt=0.0)
    ids["adap_A0_50"] = log_run(client, exp, method="adapmtl", arch=A, seed=0, target=0.5,
                                values=TABLE1["adapmtl"], sparsity=[40, 60, 60, 60], val_dt=1.0, params=p_full)
    # B
    ids["snip_B0"] = log_run(client, exp, method="snip", arch=B, seed=0, target=0.9,
                             values=scaled(TABLE1["dense"], 0.85), sparsity=[90, 90, 90, 90], val_dt=-3.0)
    ids["adap_B0"] = log_run(client, exp, method="adapmtl", arch=B, seed=0, target=0.9,
                             values=scaled(TABLE1["dense"], 0.9), sparsity=[60, 95, 95, 95], val_dt=0.5,
                             params=p_full)
    # an ASHA-stopped trial (no test metrics) and the sweep's parent run (no role): both ignored by tables
    ids["stopped"] = log_run(client, exp, method="snip", arch=A, seed=0, target=0.9, values=None, val_dt=-20.0)
    parent = client.create_run(exp, tags={S.TAG_SWEEP: SWEEP}, run_name="sweep-parent")
    client.set_terminated(parent.info.run_id)
    ids["parent"] = parent.info.run_id
    _STORE.update(uri=uri, ids=ids, experiment_id=exp, base=base)
    return _STORE
