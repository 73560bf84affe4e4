"""synthetic_scenes: batch format, physical consistency of the labels, determinism and the disk cache."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from trainers.data import build_dataset
from trainers.data import synthetic_scenes as syn
from trainers.data.synthetic_scenes import GenParams, generate, load_or_generate


@pytest.fixture(scope="module")
def scenes() -> dict[str, np.ndarray]:
    return generate(GenParams(split="test", n=12, seed=0, resolution=64))


def _camera_points(a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """3-D points (camera frame) from depth + intrinsics, and the rays through the pixel centres."""
    z = a["depth"].astype(np.float64)
    _, h, w = z.shape
    fx, fy, cx, cy = (a["intrinsics"][:, i][:, None, None].astype(np.float64) for i in range(4))
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(z)], -1)
    return rays * z[..., None], rays


def _window(x: np.ndarray, k: int = 3) -> np.ndarray:
    return sliding_window_view(x, (k, k), axis=(1, 2))


def test_batch_format(tmp_path) -> None:
    ds = build_dataset("synthetic_scenes", "train", root=tmp_path, resolution=32, augment=False, n=3)
    assert len(ds) == 3
    item = ds[0]
    assert set(item) == {
        "image",
        "segment_semantic",
        "normal",
        "depth_zbuffer",
        "depth_zbuffer_mask",
        "keypoints2d",
        "edge_texture",
    }
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["image"].min() >= -0.5 and item["image"].max() <= 0.5
    seg = item["segment_semantic"]
    assert seg.shape == (32, 32) and seg.dtype == torch.int64 and seg.min() >= 0 and seg.max() < 13
    assert item["normal"].shape == (3, 32, 32)
    assert torch.allclose(item["normal"].norm(dim=0), torch.ones(32, 32), atol=1e-4)
    assert item["depth_zbuffer"].shape == (1, 32, 32) and (item["depth_zbuffer"] > 0).all()
    assert item["depth_zbuffer_mask"].dtype == torch.bool and item["depth_zbuffer_mask"].all()
    for key in ("keypoints2d", "edge_texture"):
        assert item[key].shape == (1, 32, 32) and item[key].min() >= 0 and item[key].max() <= 1
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["segment_semantic"].shape == (2, 32, 32)


def test_tasks_restrict_labels_and_unknown_task_is_named(tmp_path) -> None:
    ds = build_dataset("synthetic_scenes", "val", root=tmp_path, tasks=["depth_zbuffer"], resolution=16, n=2)
    assert set(ds[0]) == {"image", "depth_zbuffer", "depth_zbuffer_mask"}
    with pytest.raises(ValueError, match="surface_area"):
        build_dataset("synthetic_scenes", "val", root=tmp_path, tasks=["surface_area"], resolution=16, n=2)
    with pytest.raises(ValueError, match="bogus"):
        build_dataset("synthetic_scenes", "val", root=tmp_path, resolution=16, n=2, bogus=1)


def test_normals_agree_with_depth_gradient(scenes) -> None:
    pts, rays = _camera_points(scenes)
    n = scenes["normal"].astype(np.float64)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    assert ((n * rays).sum(-1) < 0).all(), "normals must face the camera"
    dx = pts[:, 1:-1, 2:] - pts[:, 1:-1, :-2]
    dy = pts[:, 2:, 1:-1] - pts[:, :-2, 1:-1]
    est = np.cross(dx, dy)
    est /= np.linalg.norm(est, axis=-1, keepdims=True) + 1e-12
    angle = np.degrees(np.arccos(np.clip(np.abs((est * n[:, 1:-1, 1:-1]).sum(-1)), 0, 1)))
    seg = _window(scenes["seg"])
    interior = ~_window(scenes["edge"] > 0).any((-1, -2)) & (seg == seg[..., 1:2, 1:2]).all((-1, -2))
    assert interior.mean() > 0.3
    assert np.median(angle[interior]) < 2.0
    assert np.percentile(angle[interior], 90) < 5.0


def _pairs(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[axis]
    return np.take(x, range(n - 1), axis=axis), np.take(x, range(1, n), axis=axis)


def test_edges_fall_on_discontinuities(scenes) -> None:
    edge = scenes["edge"] / 255.0
    z, seg = scenes["depth"], scenes["seg"]
    n = scenes["normal"].astype(np.float64)
    for axis in (1, 2):
        (s0, s1), (z0, z1), (e0, e1), (n0, n1) = (_pairs(a, axis) for a in (seg, z, edge, n))
        marked = np.maximum(e0, e1) > 0
        class_jump = s0 != s1
        depth_jump = np.abs(z0 - z1) > 0.1 * np.minimum(z0, z1)
        normal_jump = (n0 * n1).sum(-1) < np.cos(np.radians(30))
        assert class_jump.sum() > 100 and marked[class_jump].mean() > 0.99
        assert depth_jump.sum() > 100 and marked[depth_jump].mean() > 0.9
        assert normal_jump.sum() > 100 and marked[normal_jump].mean() > 0.98
    # Flat interiors (one class, one normal, planar depth) carry no geometric/class edges ...
    zz, nn = _window(z), np.moveaxis(_window(n), 3, -1)
    centre = n[:, 1:-1, 1:-1][..., None, None, :]
    lap = np.abs(zz[..., 1, 0] + zz[..., 1, 2] - 2 * zz[..., 1, 1]) + np.abs(
        zz[..., 0, 1] + zz[..., 2, 1] - 2 * zz[..., 1, 1]
    )
    segw = _window(seg)
    flat = (
        (segw == segw[..., 1:2, 1:2]).all((-1, -2))
        & (lap < 0.01 * z[:, 1:-1, 1:-1])
        & ((nn * centre).sum(-1) > np.cos(np.radians(3))).all((-1, -2))
    )
    inner = edge[:, 1:-1, 1:-1]
    assert flat.mean() > 0.5
    assert (inner[flat] >= syn.EDGE_CLASS - 1e-3).mean() < 0.01
    # ... and the texture edges they do carry sit where the RGB changes.
    rgb = scenes["rgb"].astype(np.float64) / 255.0
    c = rgb[:, 1:-1, 1:-1]
    grad = np.max(
        [
            np.abs(rgb[:, 1:-1, 2:] - c).sum(-1),
            np.abs(rgb[:, 1:-1, :-2] - c).sum(-1),
            np.abs(rgb[:, 2:, 1:-1] - c).sum(-1),
            np.abs(rgb[:, :-2, 1:-1] - c).sum(-1),
        ],
        axis=0,
    )
    texture = np.isclose(inner, syn.EDGE_TEXTURE, atol=0.01)
    assert texture.sum() > 50
    assert grad[texture].mean() > 1.4 * grad[flat & (inner == 0)].mean()


def test_keypoints_peak_on_visible_corners(scenes) -> None:
    kp = scenes["keypoints"] / 255.0
    peaks = kp[:, 2:-2, 2:-2] > 0.9
    assert peaks.sum() >= 12  # a few visible corners per scene
    near_edge = _window(scenes["edge"] > 0, 5).any((-1, -2))
    assert near_edge[peaks].mean() > 0.95  # corners lie on edges


def test_deterministic_per_seed_and_independent_of_chunking() -> None:
    p = GenParams(split="train", n=5, seed=7, resolution=24)
    a = generate(p)
    b = generate(GenParams(split="train", n=9, seed=7, resolution=24), chunk_rays=24 * 24 * 2)
    for k in syn.ARRAY_KEYS:
        np.testing.assert_array_equal(a[k], b[k][:5])
    c = generate(GenParams(split="train", n=5, seed=8, resolution=24))
    assert not np.array_equal(a["rgb"], c["rgb"])
    t = generate(GenParams(split="test", n=5, seed=7, resolution=24))
    v = generate(GenParams(split="val", n=5, seed=7, resolution=24))
    assert not np.array_equal(a["depth"], t["depth"]) and not np.array_equal(v["depth"], t["depth"])


def test_cache_hit_is_identical_and_corrupt_cache_is_regenerated(tmp_path, monkeypatch, caplog) -> None:
    p = GenParams(split="val", n=3, seed=1, resolution=16)
    first = load_or_generate(p, tmp_path)
    path = syn.cache_path(p, tmp_path)
    assert path.is_file() and p.key() in path.name

    def boom(*args, **kwargs):
        raise AssertionError("cache miss")

    with monkeypatch.context() as m:
        m.setattr(syn, "generate", boom)
        again = load_or_generate(p, tmp_path)
    for k in syn.ARRAY_KEYS:
        np.testing.assert_array_equal(first[k], again[k])

    path.write_bytes(path.read_bytes()[:100])  # truncated file
    with caplog.at_level(logging.WARNING, logger=syn.__name__):
        regen = load_or_generate(p, tmp_path)
    assert "corrupt" in caplog.text and str(path) in caplog.text
    for k in syn.ARRAY_KEYS:
        np.testing.assert_array_equal(first[k], regen[k])
    assert syn._read_cache(path, p)["rgb"].shape == (3, 16, 16, 3)


def test_cache_dir_from_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADAPMTL_CACHE", str(tmp_path / "c"))
    ds = build_dataset("synthetic_scenes", "test", resolution=16, n=2)
    assert syn.cache_path(ds.params).parent == tmp_path / "c" and syn.cache_path(ds.params).is_file()


def test_train_flip_negates_normal_x(tmp_path) -> None:
    plain = build_dataset("synthetic_scenes", "train", root=tmp_path, resolution=16, n=2, augment=False)
    aug = build_dataset("synthetic_scenes", "train", root=tmp_path, resolution=16, n=2, augment=True)
    seen = set()
    for s in range(12):
        torch.manual_seed(s)
        a, b = aug[0], plain[0]
        if torch.equal(a["normal"], b["normal"]):
            seen.add("same")
            continue
        seen.add("flipped")
        assert torch.equal(a["segment_semantic"], b["segment_semantic"].flip(-1))
        assert torch.allclose(a["normal"][0], -b["normal"][0].flip(-1))
        assert torch.allclose(a["normal"][1:], b["normal"][1:].flip(-1))
        assert torch.allclose(a["image"], b["image"].flip(-1))
    assert seen == {"same", "flipped"}


def test_coarse_class_set_merges_labels_and_sizes_the_head(tmp_path) -> None:
    from trainers.data.synthetic_scenes import _COARSE_OF, COARSE_CLASSES

    full = build_dataset("synthetic_scenes", "test", root=tmp_path, resolution=16, n=4)
    coarse = build_dataset("synthetic_scenes", "test", root=tmp_path, resolution=16, n=4, class_set="coarse")
    for i in range(4):
        fine, merged = full[i]["segment_semantic"], coarse[i]["segment_semantic"]
        assert torch.equal(merged, torch.from_numpy(_COARSE_OF)[fine])
        assert int(merged.max()) < len(COARSE_CLASSES)
    assert coarse.task_channels["segment_semantic"] == 6 and full.task_channels["segment_semantic"] == 13
    with pytest.raises(ValueError, match="class_set"):
        build_dataset("synthetic_scenes", "test", root=tmp_path, resolution=16, n=2, class_set="tiny")

    from trainers.config import RunConfig
    from trainers.engine import build_run

    cfg = RunConfig(data={"resolution": 16, "tasks": ["segment_semantic"], "root": str(tmp_path),
                          "options": {"n_train": 2, "n_val": 2, "n_test": 4, "class_set": "coarse"}},
                    model={"width": 0.125})
    run = build_run(cfg, torch.device("cpu"))
    assert run.model(torch.zeros(1, 3, 16, 16))["segment_semantic"].shape[1] == 6
