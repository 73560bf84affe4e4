"""The MLflow schema of DESIGN.md §3.6, named in one place.

Every tag, metric and param name that the engine writes and the results read is spelled here, so a rename
is one edit and a run tracked on another machine lands in the same tables. Keep these literals stable: they
are a public contract (old runs in users' stores are read with them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

# -- tags -----------------------------------------------------------------------------------------------
TAG_SWEEP = "sweep"
TAG_METHOD = "method"
TAG_ARCH = "arch"
TAG_DATASET = "dataset"
TAG_TARGET_SPARSITY = "target_sparsity"
TAG_SEED = "seed"
TAG_ROLE = "role"
TAG_TRIAL_ID = "trial_id"
TAG_GIT_SHA = "git_sha"
TAG_STATUS = "status"
TAG_RUN_KEY = "run_key"
#: optional: a human label for an ablation variant ("w/o sliding window"); tables prefer it over params.
TAG_VARIANT = "variant"
#: optional: JSON ``{task: {metric: "higher"|"lower"}}`` so ΔT can be recomputed without this package's
#: built-in direction table (runs from other machines / new tasks).
TAG_DIRECTIONS = "directions"
#: the resolved metric conventions of a run (``trainers.conventions.MetricConventions.tag``)
TAG_CONVENTIONS = "conventions"
#: "true" / "false": whether the run's CPU arithmetic flushed denormal floats (``trainers.denormals``)
TAG_FLUSH_DENORMALS = "numerics/flush_denormals"
#: metrics logged beside a task's own (never part of ΔT or a table's ranking)
AUX_METRICS: frozenset[str] = frozenset({"miou_standard"})
#: optional: JSON list of the run's tasks in display order.
TAG_TASKS = "tasks"
#: the tuning budget of the trial's group: trials it may run, and the searched parameters ("none" if fixed)
TAG_BUDGET_TRIALS = "budget_trials"
TAG_BUDGET_SEARCHED = "budget_searched"

#: the identity tags every trial/reference run carries (DESIGN §3.6), in table order.
IDENTITY_TAGS: tuple[str, ...] = (
    TAG_SWEEP, TAG_METHOD, TAG_ARCH, TAG_DATASET, TAG_TARGET_SPARSITY, TAG_SEED, TAG_ROLE, TAG_TRIAL_ID,
    TAG_GIT_SHA, TAG_STATUS, TAG_RUN_KEY,
)

ROLE_REFERENCE = "reference"
ROLE_TRIAL = "trial"
DENSE_METHOD = "dense"

DIRECTION_HIGHER = "higher"
DIRECTION_LOWER = "lower"

# -- components ----------------------------------------------------------------------------------------
BACKBONE = "backbone"
OVERALL = "overall"
HEAD_PREFIX = "head/"


def head(task: str) -> str:
    """Component name of a task head (DESIGN §3.2)."""
    return f"{HEAD_PREFIX}{task}"


# -- metrics -------------------------------------------------------------------------------------------
DELTA_T = "delta_t"
FINAL_PARAMS_TOTAL = "final/params_total"
FINAL_PARAMS_NONZERO = "final/params_nonzero"
FINAL_FLOPS_DENSE = "final/flops_dense"
FINAL_FLOPS_SPARSE = "final/flops_sparse"
SPARSITY_OVERALL = f"sparsity/{OVERALL}"
FINAL_SPARSITY_OVERALL = f"final/sparsity/{OVERALL}"
#: training compute of a run (``trainers.compute.ComputeLedger``); step equivalents fold everything in one
COMPUTE_PREFIX = "compute/"
COMPUTE_OPTIMIZER_STEPS = "compute/optimizer_steps"
COMPUTE_STEP_EQUIVALENTS = "compute/step_equivalents"

TRAIN_LOSS_PREFIX = "train/loss/"
TRAIN_WEIGHT_PREFIX = "train/weight/"
SPARSITY_PREFIX = "sparsity/"
THRESHOLD_PREFIX = "threshold/"
VAL_PREFIX = "val/"
TEST_PREFIX = "test/"
FINAL_SPARSITY_PREFIX = "final/sparsity/"


def train_loss(task: str) -> str:
    return f"{TRAIN_LOSS_PREFIX}{task}"


def train_weight(task: str) -> str:
    """Adaptive loss weight β of a task (step series)."""
    return f"{TRAIN_WEIGHT_PREFIX}{task}"


def sparsity(component: str) -> str:
    """Step series of a component's sparsity (fraction in [0, 1])."""
    return f"{SPARSITY_PREFIX}{component}"


def threshold(component: str) -> str:
    return f"{THRESHOLD_PREFIX}{component}"


def val_metric(task: str, metric: str) -> str:
    return f"{VAL_PREFIX}{task}/{metric}"


def val_delta_t(task: str | None = None) -> str:
    """``val/delta_t/<task>``, or the overall ``val/delta_t`` (the Tune objective) when task is None."""
    return f"{VAL_PREFIX}{DELTA_T}" if task is None else f"{VAL_PREFIX}{DELTA_T}/{task}"


def test_metric(task: str, metric: str) -> str:
    return f"{TEST_PREFIX}{task}/{metric}"


def test_delta_t(task: str | None = None) -> str:
    return f"{TEST_PREFIX}{DELTA_T}" if task is None else f"{TEST_PREFIX}{DELTA_T}/{task}"


def final_sparsity(component: str) -> str:
    """Final sparsity of a component (fraction); ``final_sparsity("overall")`` is the model's."""
    return f"{FINAL_SPARSITY_PREFIX}{component}"


def parse_test_metric(key: str) -> tuple[str, str] | None:
    """``test/<task>/<metric>`` → (task, metric); None for anything else (ΔT keys included)."""
    return _parse_task_metric(key, TEST_PREFIX)


def parse_val_metric(key: str) -> tuple[str, str] | None:
    return _parse_task_metric(key, VAL_PREFIX)


def _parse_task_metric(key: str, prefix: str) -> tuple[str, str] | None:
    if not key.startswith(prefix):
        return None
    task, sep, metric = key[len(prefix):].partition("/")
    if not sep or not metric or task == DELTA_T:
        return None
    return task, metric


def parse_component(key: str, prefix: str) -> str | None:
    """``<prefix><component>`` → component (``backbone``, ``head/<task>``, ``overall``) or None."""
    return key[len(prefix):] if key.startswith(prefix) and len(key) > len(prefix) else None


# -- params --------------------------------------------------------------------------------------------
#: RunConfig.flat() puts method parameters under ``method.<name>`` and the method's name under ``method``.
METHOD_PARAM_PREFIX = "method."


# -- directions ----------------------------------------------------------------------------------------
def directions_to_tag(directions: Mapping[str, Mapping[str, str]]) -> str:
    """Serialise ``{task: {metric: direction}}`` for the ``directions`` tag (compact, key-sorted)."""
    return json.dumps({t: dict(sorted(m.items())) for t, m in directions.items()}, separators=(",", ":"))


def directions_from_tag(value: str) -> dict[str, dict[str, str]]:
    """Inverse of :func:`directions_to_tag`; a malformed tag is a one-line ValueError."""
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed {TAG_DIRECTIONS!r} tag: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(m, dict) for m in data.values()):
        raise ValueError(f"malformed {TAG_DIRECTIONS!r} tag: expected {{task: {{metric: direction}}}}")
    return {str(t): {str(k): str(v) for k, v in m.items()} for t, m in data.items()}


# -- tracking URI --------------------------------------------------------------------------------------
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_WORKDIR_NAME = ".adapmtl"


def default_workdir() -> Path:
    """``<cwd>/.adapmtl``: where the orchestrator keeps its local store unless told otherwise."""
    return Path.cwd() / DEFAULT_WORKDIR_NAME


def default_tracking_uri(workdir: str | os.PathLike[str] | None = None) -> str:
    """The local default store, ``sqlite:///<workdir>/mlflow.db`` (workdir defaults to ``<cwd>/.adapmtl``).

    The orchestrator and the results share this function so ``adapmtl run`` and ``adapmtl table`` agree on
    where runs live without any flag.
    """
    base = Path(workdir) if workdir is not None else default_workdir()
    return f"sqlite:///{(base.expanduser().resolve() / 'mlflow.db').as_posix()}"


def default_artifact_location(workdir: str | os.PathLike[str] | None = None) -> str:
    base = Path(workdir) if workdir is not None else default_workdir()
    return (base.expanduser().resolve() / "mlartifacts").as_uri()


def resolve_tracking_uri(explicit: str | None = None, workdir: str | os.PathLike[str] | None = None) -> str:
    """Precedence of DESIGN §3.6: ``--tracking-uri`` > ``$MLFLOW_TRACKING_URI`` > the local default."""
    if explicit:
        return explicit
    env = os.environ.get(TRACKING_URI_ENV)
    if env:
        return env
    return default_tracking_uri(workdir)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other schemes or in-memory databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)
