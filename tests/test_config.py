"""RunConfig validation and identity: bad input fails before any compute, with a message naming the cause."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainers.config import RunConfig


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "magic"}, "unknown method 'magic'"),
        ({"method": "snip", "target_sparsity": 1.5}, "target_sparsity must be in (0, 1)"),
        ({"method": "snip", "target_sparsity": 0.0}, "target_sparsity must be in (0, 1)"),
        ({"method": "snip"}, "needs a target_sparsity"),
        ({"method": "dense", "method_params": {"bogus": 1}}, "bogus"),
        ({"data": {"name": "imagenet"}}, "unknown dataset 'imagenet'"),
        ({"data": {"name": "nyuv2", "tasks": ["keypoints2d"]}}, "unknown task 'keypoints2d'"),
        ({"model": {"arch": "vgg16"}}, "unknown architecture 'vgg16'"),
        ({"train": {"iterations": 0}}, "iterations"),
    ],
)
def test_bad_config_is_one_clear_error(kwargs, needle):
    with pytest.raises((ValidationError, ValueError)) as info:
        RunConfig(**kwargs)
    assert needle in str(info.value)


def test_dataset_defaults_follow_the_supplement():
    nyu = RunConfig(data={"name": "nyuv2"})
    assert (nyu.train.iterations, nyu.train.lr, nyu.train.lr_decay_every, nyu.train.lr_decay) == (20000, 1e-3, 4000, 0.5)
    assert nyu.train.batch_size == 16 and nyu.train.betas == (0.5, 0.999) and nyu.train.weight_decay == 1e-4
    tk = RunConfig(data={"name": "taskonomy"})
    assert (tk.train.iterations, tk.train.lr, tk.train.lr_decay_every, tk.train.lr_decay) == (100000, 1e-4, 12000, 0.3)
    # an explicit value wins over the dataset default
    assert RunConfig(data={"name": "nyuv2"}, train={"lr": 5e-4}).train.lr == 5e-4


def test_run_key_is_stable_and_ignores_defaults():
    a = RunConfig(method="dense", seed=1)
    b = RunConfig(method="dense", seed=1, model={"arch": "resnet34"})  # explicit default = same identity
    assert a.run_key() == b.run_key()
    assert a.run_key() != RunConfig(method="dense", seed=2).run_key()
    # pinned literal: a new parameter with a default must not orphan old results
    assert RunConfig(method="dense", seed=0).run_key() == PINNED_DENSE_KEY


#: identity version 2 (metric conventions and IDENTITY_VERSION always enter the hash; see trainers.config)
PINNED_DENSE_KEY = "8f3098ff3acc98fb"


def test_metric_conventions_are_part_of_the_identity_and_logged():
    base = RunConfig(method="dense")
    assert base.conventions().name == "standard"  # synthetic scenes: the standard definitions
    official = RunConfig(method="dense", metrics={"convention": "official"})
    assert official.conventions().miou_absent == "ignore" and official.run_key() != base.run_key()
    # spelled differently, same conventions: same run
    same = RunConfig(method="dense", metrics={"miou_absent": "present"})
    assert same.conventions() == base.conventions() and same.run_key() == base.run_key()
    nyu = RunConfig(data={"name": "nyuv2"})
    assert nyu.conventions().name == "official" and nyu.conventions().normals == "official_raw"
    decoded = RunConfig(data={"name": "nyuv2", "options": {"normals": "decoded"}})
    assert decoded.conventions().name == "custom" and decoded.run_key() != nyu.run_key()
    flat = decoded.flat()
    assert flat["conventions.normals"] == "decoded" and flat["conventions.miou_absent"] == "ignore"
    with pytest.raises(ValidationError, match="contradicts"):
        RunConfig(data={"name": "nyuv2", "options": {"normals": "decoded"}}, metrics={"normals": "official_raw"})
    with pytest.raises(ValidationError):
        RunConfig(metrics={"miou_absent": "sometimes"})


def test_flat_params_are_dotted():
    flat = RunConfig(method="dense").flat()
    assert flat["train.lr"] == 1e-3 and flat["model.arch"] == "resnet34" and flat["method"] == "dense"
