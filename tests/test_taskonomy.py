"""taskonomy loader on a tiny tree written in the Tiny-Taskonomy (AdaShare-style) format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers.data import DatasetError, build_dataset
from trainers.data import taskonomy as tk
from trainers.data.nyuv2 import MEAN_BGR
from trainers.data.transforms import official_train_transform

S = 256  # the official base size: stored at 256 the base resize is the identity, so encodings are exact


def _write_group(base: Path, name: str, rng: np.random.Generator) -> list[str]:
    rel = [f"{name}_{task}.png" for task in tk.GROUP_ORDER]
    Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(base / rel[0])
    Image.fromarray(rng.integers(0, 18, (S, S)).astype(np.uint8)).save(base / rel[1])
    Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(base / rel[2])
    depth = rng.integers(0, 2**16, (S, S)).astype(np.uint16)
    depth[:20] = 65535  # invalid depth
    for arr, r in (
        (depth, rel[3]),
        (rng.integers(0, 600, (S, S)), rel[4]),
        (rng.integers(0, 7000, (S, S)), rel[5]),
    ):
        Image.fromarray(np.asarray(arr, dtype=np.uint16)).save(base / r)
    return rel


@pytest.fixture(scope="module")
def tk_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("taskonomy")
    (root / "train").mkdir()
    (root / "test").mkdir()
    rng = np.random.default_rng(0)
    index = {
        "train": [_write_group(root / "train", f"tr{i}", rng) for i in range(3)],
        "test": [_write_group(root / "test", f"te{i}", rng) for i in range(2)],
    }
    index["test_small"] = index["test"][:1]
    (root / tk.JSON_NAME).write_text(json.dumps(index))
    np.save(root / tk.PRIOR_NAME, np.linspace(0.5, 2.0, 18).astype(np.float32))
    return root


def _read(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def test_full_size_encodings(tk_root: Path) -> None:
    ds = build_dataset("taskonomy", "test", root=tk_root, eval_size="full")
    assert len(ds) == 2 and ds.class_weights.shape == (17,)
    item = ds[0]
    files = [tk_root / "test" / r for r in ds.groups[0]]
    rgb, seg, nrm, dep, kp, edge = (_read(f) for f in files)
    mean = np.array(MEAN_BGR)
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), rgb[..., ::-1] - mean, atol=1e-3)
    exp_seg = np.where(seg == 0, 1, seg).astype(np.int64) - 1
    np.testing.assert_array_equal(item["segment_semantic"].numpy(), exp_seg)
    assert item["segment_semantic"].max() <= 16
    np.testing.assert_allclose(item["normal"].permute(1, 2, 0).numpy(), nrm / 255.0 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(
        item["depth_zbuffer"][0].numpy(), np.log1p(dep.astype(np.float64)) / np.log(2**16), atol=1e-6
    )
    np.testing.assert_array_equal(item["depth_zbuffer_mask"][0].numpy(), dep < 64500)
    assert torch.equal(item["normal_mask"], item["depth_zbuffer_mask"])
    exp_kp = np.clip(kp / 2**16, 0, 0.005) / 0.005 * 2 - 1
    exp_edge = np.clip(edge / 2**16, 0, 0.08) / 0.08 * 2 - 1
    np.testing.assert_allclose(item["keypoints2d"][0].numpy(), exp_kp, atol=1e-5)
    np.testing.assert_allclose(item["edge_texture"][0].numpy(), exp_edge, atol=1e-5)
    assert item["keypoints2d_mask"].all() and item["edge_texture_mask"].all()


def test_default_eval_size_and_resolution(tk_root: Path) -> None:
    item = build_dataset("taskonomy", "test_small", root=tk_root)[0]
    assert item["image"].shape == (3, 224, 224) and item["segment_semantic"].shape == (224, 224)
    small = build_dataset(
        "taskonomy", "test", root=tk_root, resolution=32, tasks=["depth_zbuffer", "edge_texture"]
    )
    item = small[1]
    assert set(item) == {"image", "depth_zbuffer", "depth_zbuffer_mask", "edge_texture", "edge_texture_mask"}
    assert item["depth_zbuffer"].shape == (1, 32, 32)


def test_train_augmentation_pads_with_ignore(tk_root: Path) -> None:
    ds = build_dataset("taskonomy", "train", root=tk_root, resolution=32, val_fraction=0.0)
    assert len(ds) == 3 and ds.augment
    torch.manual_seed(0)
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["normal"].shape == (3, 32, 32)
    ds._train_tf = official_train_transform(32, scale=(0.5, 0.5))  # base 37 -> 18: forced padding
    item = ds[1]
    pad = ~item["keypoints2d_mask"][0]
    assert 0.5 < pad.float().mean() < 0.9
    assert (item["segment_semantic"][pad] == 255).all()
    for key in ("normal_mask", "depth_zbuffer_mask", "edge_texture_mask"):
        assert not item[key][0][pad].any()
    for key in ("normal", "depth_zbuffer", "keypoints2d", "edge_texture"):
        assert (item[key][:, pad] == 255).all()
    inside = item["segment_semantic"][~pad]
    assert inside.max() <= 16 and inside.min() >= 0


def test_val_split_and_unknown_task(tk_root: Path) -> None:
    train = build_dataset("taskonomy", "train", root=tk_root)
    val = build_dataset("taskonomy", "val", root=tk_root)
    assert len(train) + len(val) == 3 and len(val) == 1 and not val.augment
    with pytest.raises(ValueError, match="sketch"):
        build_dataset("taskonomy", "val", root=tk_root, tasks=["segment_semantic", "sketch"])


def test_errors_name_the_path(tk_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(DatasetError, match=str(missing)):
        build_dataset("taskonomy", "test", root=missing)
    # A copy of the tree that we can break.
    root = tmp_path / "copy"
    for f in tk_root.rglob("*"):
        if f.is_file():
            dst = root / f.relative_to(tk_root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(f.read_bytes())
    ds = build_dataset("taskonomy", "test", root=root)
    bad = root / "test" / ds.groups[0][3]
    bad.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(DatasetError, match=str(bad)):
        ds[0]
    gone = root / "test" / ds.groups[1][4]
    gone.unlink()
    with pytest.raises(DatasetError, match=str(gone)):
        build_dataset("taskonomy", "test", root=root)
    (root / tk.PRIOR_NAME).unlink()
    with pytest.raises(DatasetError, match=tk.PRIOR_NAME):
        build_dataset("taskonomy", "train", root=root)
