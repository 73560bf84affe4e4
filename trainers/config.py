"""RunConfig: one validated description of a training run (one trial, or one dense reference).

Validation happens here, before any compute: unknown methods, method parameters, sparsities outside (0, 1),
unknown datasets/tasks/architectures are one-line errors. Defaults per dataset follow the supplement's
Table 1 / §B (NYUv2: 20K iterations, lr 1e-3 ×0.5 every 4K; Tiny-Taskonomy: 100K, lr 1e-4 ×0.3 every 12K,
as the supplement's text and the official code choose; batch 16) and the official optimizer (Adam betas
(0.5, 0.999), coupled weight decay 1e-4).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainers.conventions import MetricConventions, MetricsConfig
from trainers.conventions import resolve as resolve_conventions
from trainers.methods import METHOD_REGISTRY, method_class, validate_params

#: Per-dataset training defaults (supplement Table 1 and §B; synthetic scenes are CPU-sized).
DATASET_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "nyuv2": {"iterations": 20000, "lr": 1e-3, "lr_decay_every": 4000, "lr_decay": 0.5, "batch_size": 16,
              "val_every": 1000},
    "taskonomy": {"iterations": 100000, "lr": 1e-4, "lr_decay_every": 12000, "lr_decay": 0.3,
                  "batch_size": 16, "val_every": 5000},
    "synthetic_scenes": {"iterations": 600, "lr": 1e-3, "lr_decay_every": 200, "lr_decay": 0.5,
                         "batch_size": 16, "val_every": 200},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    name: str = "synthetic_scenes"
    root: str | None = None
    tasks: list[str] | None = None
    resolution: int | None = Field(default=None, gt=0)
    #: generation/split seed of the data, fixed across training seeds: every seed of a sweep sees the same
    #: scenes (as with a real dataset) and only the training randomness varies.
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from trainers.data import DATASETS

        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r} (known: {', '.join(sorted(DATASETS))})")
        return v

    @model_validator(mode="after")
    def _known_tasks(self) -> DataConfig:
        from trainers.data import DATASETS

        info = DATASETS[self.name]
        for t in self.tasks or []:
            if t not in info.task_channels:
                raise ValueError(
                    f"unknown task {t!r} for dataset {self.name!r} (known: {', '.join(info.task_channels)})"
                )
        if self.tasks is not None and not self.tasks:
            raise ValueError("data.tasks is empty")
        return self

    def task_list(self) -> list[str]:
        from trainers.data import DATASETS

        return list(self.tasks or DATASETS[self.name].default_tasks)


class ModelConfig(_Strict):
    arch: str = "resnet34"
    width: float = Field(default=1.0, gt=0, le=4)
    head_channels: int | None = Field(default=None, gt=0)
    dropout: float = Field(default=0.5, ge=0, lt=1)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        from trainers.models import ARCHS

        if v not in ARCHS:
            raise ValueError(f"unknown architecture {v!r} (known: {', '.join(ARCHS)})")
        return v


class TrainConfig(_Strict):
    iterations: int = Field(default=600, gt=0)
    batch_size: int = Field(default=16, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    lr_decay_every: int = Field(default=4000, gt=0)
    lr_decay: float = Field(default=0.5, gt=0, le=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    betas: tuple[float, float] = (0.5, 0.999)
    val_every: int = Field(default=1000, gt=0)
    log_every: int = Field(default=50, gt=0)
    checkpoint_every: int = Field(default=2000, gt=0)
    eval_batch_size: int | None = Field(default=None, gt=0)
    num_workers: int = Field(default=0, ge=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool | None = None
    max_eval_batches: int | None = Field(default=None, gt=0)


#: Bumped when a default changes what a run *means* (so an old run with the same non-default values must not
#: be taken for a new one). 2: metric conventions in the identity; AdapMTL λ = 5 (Eq. 6 as written); DiSparse
#: keeps pruned values, scores the training batch, per-dataset official defaults; IMP iterative; SNIP biases;
#: NYUv2 normals on the official raw encoding.
IDENTITY_VERSION = 2


class RunConfig(_Strict):
    """A whole run. ``train`` fields left unset take the dataset's defaults."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    method: str = "dense"
    method_params: dict[str, Any] = Field(default_factory=dict)
    target_sparsity: float | None = None
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _dataset_defaults(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        data = values.get("data") or {}
        name = data.get("name", "synthetic_scenes") if isinstance(data, dict) else data.name
        train = values.get("train")
        if train is None or isinstance(train, dict):
            merged = dict(DATASET_TRAIN_DEFAULTS.get(name, {}))
            merged.update(train or {})
            values = {**values, "train": merged}
        return values

    @model_validator(mode="after")
    def _method_and_target(self) -> RunConfig:
        if self.method not in METHOD_REGISTRY:
            raise ValueError(f"unknown method {self.method!r} (known: {', '.join(sorted(METHOD_REGISTRY))})")
        validate_params(self.method, self.method_params)
        needs_target = method_class(self.method).requires_target
        if self.target_sparsity is not None and not 0.0 < self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {self.target_sparsity}")
        if needs_target and self.target_sparsity is None:
            raise ValueError(f"method {self.method!r} needs a target_sparsity in (0, 1)")
        self.conventions()  # contradictions (metrics.normals vs dataset.options.normals) fail here
        return self

    def conventions(self) -> MetricConventions:
        """The resolved metric conventions of this run (``trainers.conventions``)."""
        return resolve_conventions(self.data.name, self.metrics, self.data.options)

    # -- identity and flattening -------------------------------------------------------------------
    def flat(self) -> dict[str, Any]:
        """Flattened view for MLflow params (``train.lr``, ``method.theta_init``, ...)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = obj

        dumped = self.model_dump(mode="json")
        params = dumped.pop("method_params")
        walk("", dumped)
        walk("method", {**params}) if params else None
        walk("conventions", self.conventions().model_dump(mode="json"))
        out["method"] = self.method
        return out

    def resolved(self) -> dict[str, Any]:
        """The config with every default made explicit (method params included)."""
        dumped = self.model_dump(mode="json")
        dumped["method_params"] = validate_params(self.method, self.method_params).model_dump(mode="json")
        dumped["data"]["tasks"] = self.data.task_list()
        dumped["conventions"] = self.conventions().model_dump(mode="json")
        return dumped

    def run_key(self) -> str:
        """Run identity: hash of what differs from the defaults (OpenLTH ``desc``). No timestamps, no paths.

        Only non-default values enter the hash, so adding a new parameter *with a default* keeps every old
        key (old results are not orphaned); tests pin literal keys to catch accidental changes. Two things
        always enter: the resolved metric conventions (a run evaluated otherwise is another run, whatever
        spelled it) and ``IDENTITY_VERSION`` (bumped when a default changes a run's meaning).
        """
        dumped = self.model_dump(mode="json", exclude_defaults=True)
        dumped.pop("metrics", None)
        params = validate_params(self.method, self.method_params).model_dump(mode="json", exclude_defaults=True)
        dumped["method"] = self.method
        dumped["method_params"] = params
        dumped["conventions"] = self.conventions().knobs()
        dumped["identity"] = IDENTITY_VERSION
        payload = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
