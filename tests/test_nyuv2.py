"""nyuv2 loader on a tiny tree written in the exact AdaShare/AdapMTL format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers.data import DatasetError, build_dataset
from trainers.data import nyuv2 as nyu
from trainers.data.transforms import flip_only_transform

H, W = 48, 64


def _write_sample(root: Path, name: str, rng: np.random.Generator) -> list[str]:
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    seg = rng.integers(0, 40, (H, W)).astype(np.uint8)
    seg[:5] = 255
    n = rng.normal(size=(H, W, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    enc = np.clip(np.round((n + 1) * 127.5), 0, 254).astype(np.uint8)
    enc[-6:, :10] = 255  # invalid normals
    depth = rng.uniform(1.0, 6.0, (H, W)).astype(np.float32)
    depth[:3, :3] = 0.0  # invalid depth
    rel = [f"img/{name}.png", f"seg/{name}.png", f"normal_mask/{name}.png", f"depth/{name}.npy"]
    for sub in ("img", "seg", "normal_mask", "depth"):
        (root / sub).mkdir(exist_ok=True)
    Image.fromarray(img).save(root / rel[0])
    Image.fromarray(seg).save(root / rel[1])
    Image.fromarray(enc).save(root / rel[2])
    np.save(root / rel[3], depth)
    return rel


@pytest.fixture()
def nyu_root(tmp_path) -> Path:
    root = tmp_path / "nyu"
    root.mkdir()
    rng = np.random.default_rng(0)
    index = {
        "train": [_write_sample(root, f"{i:04d}", rng) for i in range(4)],
        "test": [_write_sample(root, f"{i:04d}", rng) for i in range(4, 6)],
    }
    (root / nyu.JSON_NAME).write_text(json.dumps(index))
    return root


def _raw(root: Path, rel: list[str]) -> tuple[np.ndarray, ...]:
    return (
        np.array(Image.open(root / rel[0])),
        np.array(Image.open(root / rel[1])),
        np.array(Image.open(root / rel[2])),
        np.load(root / rel[3]),
    )


def test_full_size_eval_encodings(nyu_root: Path) -> None:
    ds = build_dataset("nyuv2", "test", root=nyu_root, eval_size="full")
    assert len(ds) == 2
    item = ds[0]
    img, seg, enc, depth = _raw(nyu_root, ds.groups[0])
    # Official image preprocessing: BGR order minus the BGR mean, no /255.
    expected = img[..., ::-1].astype(np.float32) - np.array(nyu.MEAN_BGR, np.float32)
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), expected, atol=1e-4)
    assert item["segment_semantic"].dtype == torch.int64
    np.testing.assert_array_equal(item["segment_semantic"].numpy(), seg)
    valid = ~(enc == 255).all(-1)
    np.testing.assert_array_equal(item["normal_mask"][0].numpy(), valid)
    # default normals: the official convention (raw 0-255 encoding in OpenCV's BGR order, L2-normalised)
    raw = enc[..., ::-1].astype(np.float64)
    raw /= np.linalg.norm(raw, axis=-1, keepdims=True)
    np.testing.assert_allclose(item["normal"].permute(1, 2, 0).numpy()[valid], raw[valid], atol=1e-5)
    assert (item["normal"][:, ~torch.from_numpy(valid)] == 0).all()
    decoded = build_dataset("nyuv2", "test", root=nyu_root, eval_size="full", normals="decoded")[0]
    dec = enc.astype(np.float64) / 127.5 - 1
    dec /= np.linalg.norm(dec, axis=-1, keepdims=True)
    np.testing.assert_allclose(decoded["normal"].permute(1, 2, 0).numpy()[valid], dec[valid], atol=1e-5)
    np.testing.assert_allclose(item["depth_zbuffer"][0].numpy(), depth)
    np.testing.assert_array_equal(item["depth_zbuffer_mask"][0].numpy(), depth > 3e-5)
    assert item["depth_zbuffer_mask"].dtype == torch.bool and item["depth_zbuffer"].shape == (1, H, W)


def test_official_raw_normals_and_imagenet_option(nyu_root: Path) -> None:
    ds = build_dataset(
        "nyuv2", "test", root=nyu_root, eval_size="full", normals="official_raw", image_norm="imagenet"
    )
    item = ds[1]
    img, _, enc, _ = _raw(nyu_root, ds.groups[1])
    bgr = enc[..., ::-1].astype(np.float64)
    bgr /= np.linalg.norm(bgr, axis=-1, keepdims=True)
    valid = ~(enc == 255).all(-1)
    np.testing.assert_allclose(item["normal"].permute(1, 2, 0).numpy()[valid], bgr[valid], atol=1e-5)
    exp = (img / 255.0 - np.array(nyu.IMAGENET_MEAN_RGB)) / np.array(nyu.IMAGENET_STD_RGB)
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), exp, atol=1e-4)


def test_eval_resize_and_train_crop_with_padding(nyu_root: Path) -> None:
    test = build_dataset("nyuv2", "test", root=nyu_root, resolution=32)
    item = test[0]
    assert item["image"].shape == (3, 32, 32) and item["segment_semantic"].shape == (32, 32)
    _, seg, _, _ = _raw(nyu_root, test.groups[0])
    assert set(item["segment_semantic"].unique().tolist()) <= set(np.unique(seg).tolist())
    # resolution 96 on a 48x64 image: the base is ~14x19, so the 96x96 crop is mostly padding.
    train = build_dataset("nyuv2", "train", root=nyu_root, resolution=96)
    torch.manual_seed(0)
    item = train[0]
    assert item["image"].shape == (3, 96, 96)
    pad = (item["image"] == -torch.tensor(nyu.MEAN_BGR, dtype=torch.float32).view(3, 1, 1)).all(0)
    assert pad.float().mean() > 0.5
    assert (item["segment_semantic"][pad] == 255).all()
    assert not item["normal_mask"][0][pad].any() and not item["depth_zbuffer_mask"][0][pad].any()
    assert (item["normal"][:, pad] == 0).all() and (item["depth_zbuffer"][0][pad] == 0).all()
    n = item["normal"][:, item["normal_mask"][0]]
    assert torch.allclose(n.norm(dim=0), torch.ones(n.shape[1]), atol=1e-5)
    batch = torch.utils.data.default_collate([train[0], train[1]])
    assert batch["image"].shape == (2, 3, 96, 96) and batch["normal_mask"].shape == (2, 1, 96, 96)


def test_decoded_normals_flip_x(nyu_root: Path) -> None:
    ds = build_dataset("nyuv2", "train", root=nyu_root, augment=False, eval_size="full", normals="decoded")
    ref = ds[0]
    ds.augment = True
    ds._train_tf = flip_only_transform(1.0, negate_normal_x=True)
    flipped = ds[0]
    assert torch.allclose(flipped["normal"][0], -ref["normal"][0].flip(-1))
    assert torch.allclose(flipped["normal"][1:], ref["normal"][1:].flip(-1))


def test_val_is_a_deterministic_disjoint_slice_of_train(nyu_root: Path) -> None:
    train = build_dataset("nyuv2", "train", root=nyu_root, val_fraction=0.25)
    val = build_dataset("nyuv2", "val", root=nyu_root, val_fraction=0.25)
    again = build_dataset("nyuv2", "val", root=nyu_root, val_fraction=0.25)
    assert len(train) == 3 and len(val) == 1 and val.groups == again.groups
    assert not {tuple(g) for g in train.groups} & {tuple(g) for g in val.groups}
    assert not val.augment and train.augment
    assert val[0]["image"].shape == (3, 321, 321)  # official eval size by default


def test_errors_name_the_path(nyu_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=str(missing)):
        build_dataset("nyuv2", "train", root=missing)
    with pytest.raises(DatasetError, match="needs dataset.root"):
        build_dataset("nyuv2", "train")
    with pytest.raises(ValueError, match="keypoints2d"):
        build_dataset("nyuv2", "train", root=nyu_root, tasks=["keypoints2d"])

    ds = build_dataset("nyuv2", "test", root=nyu_root)
    bad_png = nyu_root / ds.groups[0][0]
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DatasetError, match=str(bad_png)) as err:
        ds[0]
    assert "\n" not in str(err.value)
    bad_npy = nyu_root / ds.groups[1][3]
    bad_npy.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=str(bad_npy)):
        ds[1]

    gone = nyu_root / ds.groups[1][1]
    gone.unlink()
    with pytest.raises(DatasetError, match=str(gone)):
        build_dataset("nyuv2", "test", root=nyu_root)
    (nyu_root / nyu.JSON_NAME).unlink()
    with pytest.raises(DatasetError, match=nyu.JSON_NAME):
        build_dataset("nyuv2", "test", root=nyu_root)
