"""Dataset registry: ``DATASETS[name]`` -> ``DatasetInfo`` and the ``build_dataset`` convenience wrapper.

Every dataset returns the INTERNAL_API sample dict (``image`` + one key per requested task + optional
``<task>_mask`` validity masks). ``tasks`` restricts which labels are built; an unknown task is a ValueError
naming it. Splits: ``train``, ``val`` (held out deterministically from the training data), ``test``.

| name              | tasks (channels)                                          | root                      |
|-------------------|-----------------------------------------------------------|---------------------------|
| synthetic_scenes  | segment_semantic 13, normal 3, depth_zbuffer 1,           | optional: the cache dir   |
|                   | keypoints2d 1, edge_texture 1                              |                           |
| nyuv2             | segment_semantic 40, normal 3, depth_zbuffer 1            | AdaShare-formatted NYUv2  |
| taskonomy         | segment_semantic 17, normal 3, depth_zbuffer 1,           | Tiny-Taskonomy            |
|                   | keypoints2d 1, edge_texture 1                              |                           |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from trainers.data import nyuv2, synthetic_scenes, taskonomy
from trainers.data.errors import DatasetError

__all__ = ["DATASETS", "DatasetError", "DatasetInfo", "build_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the system needs to know about a dataset before building it."""

    name: str
    task_channels: Mapping[str, int]
    default_tasks: tuple[str, ...]
    build: Callable[..., Dataset]
    splits: tuple[str, ...] = ("train", "val", "test")
    requires_root: bool = True
    options: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "synthetic_scenes": DatasetInfo(
        name="synthetic_scenes",
        task_channels=dict(synthetic_scenes.TASK_CHANNELS),
        default_tasks=tuple(synthetic_scenes.TASK_CHANNELS),
        build=synthetic_scenes.build,
        requires_root=False,
        options=("n", "n_train", "n_val", "n_test", "supersample", "noise_std", "image_norm"),
        description="procedural indoor rooms rendered by a vectorised ray caster (CPU default)",
    ),
    "nyuv2": DatasetInfo(
        name="nyuv2",
        task_channels=dict(nyuv2.TASK_CHANNELS),
        default_tasks=tuple(nyuv2.TASK_CHANNELS),
        build=nyuv2.build,
        options=("normals", "eval_size", "image_norm", "val_fraction", "val_seed"),
        description="NYUv2 in the AdaShare layout (795 train / 654 test, 40 classes)",
    ),
    "taskonomy": DatasetInfo(
        name="taskonomy",
        task_channels=dict(taskonomy.TASK_CHANNELS),
        default_tasks=tuple(taskonomy.TASK_CHANNELS),
        build=taskonomy.build,
        splits=("train", "val", "test", "test_small"),
        options=("eval_size", "image_norm", "val_fraction", "val_seed"),
        description="Tiny-Taskonomy in the AdaShare-style layout (17 classes, five tasks)",
    ),
}


def get_dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}") from None


def build_dataset(
    name: str,
    split: str,
    *,
    tasks: Sequence[str] | None = None,
    root: str | Path | None = None,
    resolution: int | None = None,
    augment: bool | None = None,
    seed: int = 0,
    **opts: Any,
) -> Dataset:
    """Build split ``split`` of dataset ``name`` (see the module table); ``tasks=None`` = default tasks.

    ``augment=None`` means the dataset's default (train split augmented, others not); ``resolution`` overrides
    the official crop/eval size (synthetic: the render size).
    """
    info = get_dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"unknown split {split!r} for dataset {name}; expected one of {info.splits}")
    chosen = info.default_tasks if tasks is None else tuple(tasks)
    for t in chosen:
        if t not in info.task_channels:
            raise ValueError(
                f"unknown task {t!r} for dataset {name}; available: {sorted(info.task_channels)}"
            )
    return info.build(
        split, tasks=chosen, root=root, resolution=resolution, augment=augment, seed=seed, **opts
    )
