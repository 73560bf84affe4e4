"""Metric conventions: how a number was measured, as data that travels with every run.

The same predictions give different numbers under different evaluation rules, sometimes in a different order.
On synthetic scenes, the official AdapMTL mIoU (classes with no true positive dropped from the mean)
*rewards* a model that stops predicting the hard classes, and reversed the dense-vs-AdapMTL ordering that
the standard mIoU shows; on NYUv2 the official raw-encoding normals read half the angle of decoded unit
normals for the same geometric error. So a convention is never a scattered default: it is one named set,
resolved per run, logged as run parameters, part of the run identity, and named in every table caption, and
a table refuses to mix runs evaluated under different ones.

The knobs (each a choice the official code and the usual definitions disagree on):

* ``miou_absent`` — which classes enter the mIoU mean: ``ignore`` (official: TP > 0 only), ``present``
  (standard: classes in ground truth or prediction, IoU 0 if never right), ``zero`` (all C classes);
* ``delta_nonpositive`` — a depth prediction ≤ 0 in δ < 1.25^k: ``official`` (the raw ratio, so a negative
  prediction counts as within), ``outside`` (never within);
* ``average`` — per-pixel quantities (pixel accuracy, depth errors): ``batch`` (official: per-batch means,
  batch-size weighted), ``pooled`` (every valid pixel of the split);
* ``inclusive`` — thresholds ``≤`` (official ``np.less_equal``) or ``<`` (the usual "within");
* ``normals`` — NYUv2's normal encoding, for targets and metric: ``official_raw`` (L2-normalised raw 0–255
  BGR encoding, the official loader and metric) or ``decoded`` (unit vectors); ``native`` for datasets that
  store unit normals (synthetic scenes, Taskonomy's loader).

Named sets: ``official`` (the official AdapMTL evaluation, the default on NYUv2 and Tiny-Taskonomy, so
numbers compare with the paper's Tables 1–3) and ``standard`` (the usual definitions, the default on
synthetic scenes, where no paper number is at stake). Any knob can be overridden; the resolved set then has
the name ``custom``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["DATASET_DEFAULT", "NAMED", "MetricConventions", "MetricsConfig", "describe", "from_tag", "resolve"]

ConventionName = Literal["official", "standard"]


class MetricConventions(BaseModel):
    """One fully resolved set (every knob explicit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["official", "standard", "custom"]
    miou_absent: Literal["ignore", "present", "zero"]
    delta_nonpositive: Literal["outside", "official"]
    average: Literal["batch", "pooled"]
    inclusive: bool
    normals: Literal["official_raw", "decoded", "native"]

    def task_options(self) -> dict[str, Any]:
        """The ``trainers.tasks.get_task`` options these conventions set."""
        return {"miou_absent": self.miou_absent, "delta_nonpositive": self.delta_nonpositive,
                "average": self.average, "inclusive": self.inclusive}

    def knobs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})

    def tag(self) -> str:
        """Compact identity for the MLflow tag ``conventions`` (what tables compare)."""
        knobs = self.knobs()
        return f"{self.name}:" + ",".join(f"{k}={knobs[k]}" for k in sorted(knobs))


class MetricsConfig(BaseModel):
    """What a spec / RunConfig says: a named set (default: the dataset's) plus optional overrides."""

    model_config = ConfigDict(extra="forbid")

    convention: ConventionName | None = None
    miou_absent: Literal["ignore", "present", "zero"] | None = None
    delta_nonpositive: Literal["outside", "official"] | None = None
    average: Literal["batch", "pooled"] | None = None
    inclusive: bool | None = None
    normals: Literal["official_raw", "decoded"] | None = None


NAMED: dict[str, dict[str, Any]] = {
    "official": {"miou_absent": "ignore", "delta_nonpositive": "official", "average": "batch",
                 "inclusive": True, "normals": "official_raw"},
    "standard": {"miou_absent": "present", "delta_nonpositive": "outside", "average": "pooled",
                 "inclusive": False, "normals": "decoded"},
}
DATASET_DEFAULT: dict[str, ConventionName] = {"nyuv2": "official", "taskonomy": "official",
                                              "synthetic_scenes": "standard"}
#: datasets whose normal encoding is a choice (the others store unit normals)
ENCODED_NORMALS = frozenset({"nyuv2"})


def resolve(dataset: str, config: MetricsConfig | Mapping[str, Any] | None = None,
            dataset_options: Mapping[str, Any] | None = None) -> MetricConventions:
    """The conventions of a run on ``dataset``; a NYUv2 ``normals`` dataset option counts as an override
    (and must agree with an explicit ``metrics.normals``)."""
    cfg = config if isinstance(config, MetricsConfig) else MetricsConfig(**dict(config or {}))
    base_name = cfg.convention or DATASET_DEFAULT.get(dataset, "standard")
    knobs = dict(NAMED[base_name])
    overrides = cfg.model_dump(exclude={"convention"}, exclude_none=True)
    option = (dataset_options or {}).get("normals")
    if option is not None and dataset in ENCODED_NORMALS:
        if "normals" in overrides and overrides["normals"] != option:
            raise ValueError(f"metrics.normals {overrides['normals']!r} contradicts dataset.options.normals "
                             f"{option!r}")
        overrides["normals"] = option
    if dataset not in ENCODED_NORMALS:
        overrides.pop("normals", None)
        knobs["normals"] = "native"
    changed = {k: v for k, v in overrides.items() if knobs.get(k) != v}
    knobs.update(overrides)
    return MetricConventions(name="custom" if changed else base_name, **knobs)


_TEXT = {
    "miou_absent": {"ignore": "mIoU over classes with a true positive",
                    "present": "mIoU over classes present in ground truth or prediction",
                    "zero": "mIoU over all classes"},
    "average": {"batch": "batch-weighted means", "pooled": "pixel-pooled means"},
    "inclusive": {True: "thresholds ≤", False: "thresholds <"},
    "delta_nonpositive": {"official": "δ on raw ratios", "outside": "δ counts p ≤ 0 as outside"},
    "normals": {"official_raw": "normals on the raw encoding", "decoded": "decoded unit normals",
                "native": ""},
}


def describe(conventions: MetricConventions | Mapping[str, Any]) -> str:
    """One sentence for a caption, e.g. "Metrics: standard definitions (mIoU over classes present ...)"."""
    c = conventions if isinstance(conventions, MetricConventions) else MetricConventions(**dict(conventions))
    parts = [_TEXT[k][v] for k, v in c.knobs().items() if _TEXT[k].get(v)]
    title = {"official": "the official AdapMTL evaluation", "standard": "standard definitions",
             "custom": "custom conventions"}[c.name]
    return f"Metrics: {title} ({'; '.join(parts)})"


def from_tag(tag: str) -> MetricConventions:
    """Inverse of :meth:`MetricConventions.tag` (a malformed tag is a ValueError naming it)."""
    name, _, body = str(tag).partition(":")
    try:
        knobs: dict[str, Any] = dict(part.split("=", 1) for part in body.split(",") if part)
        knobs["inclusive"] = knobs.get("inclusive") == "True"
        return MetricConventions(name=name, **knobs)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed conventions tag {tag!r}") from exc
