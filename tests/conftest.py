"""Shared fixtures: a tiny synthetic-scenes run configuration and an isolated cache/MLflow per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated datasets go to a per-session cache unless the caller pinned one (CI may share it)."""
    if "ADAPMTL_CACHE" not in os.environ:
        os.environ["ADAPMTL_CACHE"] = str(tmp_path_factory.mktemp("adapmtl-cache"))
    import torch

    torch.set_num_threads(1)


def tiny_config(**overrides):
    """A run that takes a few seconds on one core: 32×32 synthetic scenes, width-0.125 ResNet34."""
    from trainers.config import RunConfig

    base = {
        "data": {"name": "synthetic_scenes", "resolution": 32,
                 "options": {"n_train": 64, "n_val": 16, "n_test": 16}},
        "model": {"arch": "resnet34", "width": 0.125},
        "train": {"iterations": 12, "batch_size": 8, "val_every": 6, "log_every": 3, "checkpoint_every": 4,
                  "lr_decay_every": 8},
        "method": "dense",
        "seed": 0,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return RunConfig(**base)


@pytest.fixture
def make_config():
    return tiny_config
