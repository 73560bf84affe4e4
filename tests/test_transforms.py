"""Joint augmentation: image and every label see the same scale/crop/flip; normals flip; padding fills."""

from __future__ import annotations

import pytest
import torch

from trainers.data.transforms import (
    LabelSpec,
    flip_only_transform,
    official_train_transform,
    resize_transform,
)

H, W = 24, 32


def _coordinate_sample() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Image channels = (x, y, 1); seg = unique pixel id; depth = x + 1000 y (all functions of the pixel)."""
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    image = torch.stack([xs, ys, torch.ones_like(xs)])
    seg = (ys * W + xs).long()[None]
    depth = (xs + 1000 * ys)[None] + 1.0
    return image, {"segment_semantic": seg, "depth_zbuffer": depth}


@pytest.mark.parametrize("seed", range(8))
def test_image_and_labels_get_identical_geometry(seed: int) -> None:
    torch.manual_seed(seed)
    image, labels = _coordinate_sample()
    tf = official_train_transform((20, 28), scale=(0.5, 1.5))
    specs = {"segment_semantic": LabelSpec(255), "depth_zbuffer": LabelSpec(0.0)}
    out_img, out, inside = tf(image, labels, specs)
    assert out_img.shape == (3, 20, 28) and out["segment_semantic"].shape == (1, 20, 28)
    seg, depth = out["segment_semantic"][0], out["depth_zbuffer"][0]
    m = inside[0]
    assert m.any()
    sx, sy = seg[m] % W, seg[m] // W
    # Both labels (nearest) point at the same source pixel.
    assert torch.equal(depth[m], (sx + 1000 * sy).float() + 1.0)
    # The bilinear image samples within one source pixel of the labels' nearest sample.
    assert (out_img[0][m] - sx.float()).abs().max() <= 1.01
    assert (out_img[1][m] - sy.float()).abs().max() <= 1.01
    assert torch.allclose(out_img[2][m], torch.ones(int(m.sum())))
    # Padded pixels carry each label's own pad value and a zero image.
    assert (seg[~m] == 255).all() and (depth[~m] == 0).all() and (out_img[:, ~m] == 0).all()


def test_horizontal_flip_negates_normal_x_only_when_asked() -> None:
    normal = torch.nn.functional.normalize(torch.randn(3, H, W), dim=0)
    image, labels = _coordinate_sample()
    labels["normal"] = normal
    specs = {"normal": LabelSpec(normal=True)}
    _, out, _ = flip_only_transform(1.0, negate_normal_x=True)(image, labels, specs)
    flipped = normal.flip(-1)
    assert torch.allclose(out["normal"][0], -flipped[0])
    assert torch.allclose(out["normal"][1:], flipped[1:])
    assert torch.equal(out["segment_semantic"], labels["segment_semantic"].flip(-1))
    _, out2, _ = flip_only_transform(1.0, negate_normal_x=False)(image, labels, specs)
    assert torch.allclose(out2["normal"], flipped)
    _, out3, _ = flip_only_transform(0.0)(image, labels, specs)
    assert torch.equal(out3["normal"], normal)


def test_centred_padding_fills_ignore_values() -> None:
    image, labels = _coordinate_sample()
    labels["mask"] = torch.ones((1, H, W), dtype=torch.uint8)
    tf = official_train_transform((40, 50), scale=(1.0, 1.0), flip_p=0.0)
    specs = {"segment_semantic": LabelSpec(255), "depth_zbuffer": LabelSpec(0.0), "mask": LabelSpec(0)}
    out_img, out, inside = tf(image, labels, specs)
    top, left = (40 - H) // 2, (50 - W) // 2  # centred, as the official loader
    assert inside.sum() == H * W
    assert inside[0, top : top + H, left : left + W].all()
    assert torch.equal(
        out["segment_semantic"][0, top : top + H, left : left + W], labels["segment_semantic"][0]
    )
    assert (out["segment_semantic"][~inside] == 255).all()
    assert (out["depth_zbuffer"][~inside] == 0).all()
    assert (out["mask"][~inside] == 0).all() and (out["mask"][inside] == 1).all()
    assert (out_img[:, ~inside[0]] == 0).all()


def test_resize_keeps_label_values() -> None:
    image, labels = _coordinate_sample()
    out_img, out, inside = resize_transform((13, 17))(image, labels, {})
    assert out_img.shape == (3, 13, 17) and inside.all()
    assert set(out["segment_semantic"].unique().tolist()) <= set(labels["segment_semantic"].unique().tolist())
    assert out["segment_semantic"].dtype == torch.int64


def test_label_size_mismatch_is_an_error() -> None:
    image, labels = _coordinate_sample()
    labels["bad"] = torch.zeros((1, H + 1, W))
    with pytest.raises(ValueError, match="bad"):
        flip_only_transform()(image, labels, {})
