"""``synthetic_scenes``: procedurally generated indoor rooms, rendered by a vectorised ray caster.

Why: the default sweep must run end to end on a CPU without downloading anything, yet exercise all five
dense tasks with labels that are *physically consistent* (depth, normals, edges, keypoints and classes all
come from the same ray hit), so that multitask interference and pruning behave like on real data.

Scene (world frame: x, y on the floor, z up, metres):
- an axis-aligned box room ``[0, W] x [0, D] x [0, Hz]`` seen from inside (floor, ceiling, four walls), with
  decals that change the class but not the geometry (a rug on the floor, pictures and a door on walls);
- 1-4 boxes standing on the floor (axis-aligned or yaw-rotated), 0-2 spheres resting on the floor, 0-2
  vertical cylinders (barrels, and columns reaching the ceiling); footprints do not overlap;
- a pinhole camera inside the room (random position, height, yaw aimed roughly at the room, pitch, FOV)
  and a point light under the ceiling.

Per pixel (the ray through the pixel centre): class id, z-buffer depth (distance along the optical axis,
metres), unit normal in the camera frame (OpenCV convention: x right, y down, z forward; oriented towards the
camera), an edge-strength map and a keypoint heatmap. RGB is Lambertian shading (point light + ambient) of a
per-class base colour with a procedural texture (checker/stripes/bands) plus Gaussian noise. With
``supersample=2`` (default) pixels on a surface/class/texture boundary get the mean colour of 2x2 sub-pixel
rays (adaptive antialiasing); labels always come from the pixel-centre ray.

Edges (one-pixel lines, drawn on the nearer pixel of each 4-neighbour pair that differs): occlusion
(different surface and a depth gap) 1.0, crease (different surface, no gap) 0.8, class boundary on one
surface (decals) 0.6, texture boundary 0.4. Keypoints: max of Gaussians at the projected *visible* corners of
the boxes and of the room.

Rendering is vectorised over a chunk of scenes x all rays (numpy, float32; objects are culled per ray by a
bounding-sphere test first); every random quantity of scene i comes from its own generator seeded by
(seed, split stream, i), so a scene does not depend on the chunking. Splits use separate streams
(train 0, val 1, test 2): they never share a scene. Cost (one core, 64x64): ~9 ms/scene with the default
2x adaptive supersampling (~24 s CPU for the default 2000/200/500 splits), ~4.5 ms/scene without; it grows
with the pixel count (about 7x from 64x64 to 128x128).

The arrays are generated once per parameter set and cached as an ``.npz`` under ``$ADAPMTL_CACHE`` (default
``~/.cache/adapmtl``), keyed by a hash of the generation parameters; a corrupt or mismatched file is
regenerated. Image normalisation (documented choice): ``image_norm="center"`` gives ``rgb/255 - 0.5``
(``"imagenet"``: ImageNet mean/std on RGB in [0, 1]).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trainers.data.errors import DatasetError, check_options
from trainers.data.flip import HorizontalFlip
from trainers.data.labels import LabelSpec

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the renderer changes: old cache files then stop matching

CLASSES: tuple[str, ...] = (
    "floor",  # 0  room
    "ceiling",  # 1
    "wall",  # 2
    "rug",  # 3  decal on the floor
    "picture",  # 4  decal on a wall
    "door",  # 5  decal on a wall, touching the floor
    "cabinet",  # 6  tall narrow box
    "table",  # 7  waist-high box
    "bed",  # 8  low wide box
    "crate",  # 9  small cube-like box
    "ball",  # 10 sphere
    "barrel",  # 11 short cylinder
    "column",  # 12 floor-to-ceiling cylinder
)
NUM_CLASSES = len(CLASSES)
TASK_CHANNELS: dict[str, int] = {
    "segment_semantic": NUM_CLASSES,
    "normal": 3,
    "depth_zbuffer": 1,
    "keypoints2d": 1,
    "edge_texture": 1,
}
#: ``class_set="coarse"``: the 13 classes merged into 6 (floor, ceiling, wall, decal, furniture box, round
#: object). Why: in short CPU runs the rare small classes (ball 1.4 % of pixels, crate 1.2 %, door 1.3 %)
#: are learned by some seeds and not others, so a 13-class mIoU varies by ±4 points between seeds and
#: measures that lottery rather than the model; merged, every class covers ≥ 5 % of the pixels.
COARSE_CLASSES: tuple[str, ...] = ("floor", "ceiling", "wall", "decal", "furniture", "round object")
_COARSE_OF = np.array([0, 1, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5], dtype=np.int64)  # index: fine class id
CLASS_SETS = ("full", "coarse")
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 2000, "val": 200, "test": 500}

# Base colours (RGB in [0, 1]) and procedural textures per class.  Texture parity =
# (floor((u1.q + ph)/p) + floor((u2.q + ph)/p)) mod 2 on the hit point q in the object's frame; odd cells
# are darkened by `contrast`.  Only in-plane or continuous combinations of coordinates are used, so a flat
# face never flickers between cells from rounding noise.
_PALETTE = np.array(
    [
        [0.55, 0.42, 0.30],  # floor (wood)
        [0.92, 0.92, 0.90],  # ceiling
        [0.80, 0.76, 0.68],  # wall
        [0.60, 0.15, 0.18],  # rug
        [0.25, 0.45, 0.65],  # picture
        [0.45, 0.30, 0.20],  # door
        [0.70, 0.60, 0.45],  # cabinet
        [0.40, 0.28, 0.18],  # table
        [0.35, 0.45, 0.75],  # bed
        [0.75, 0.62, 0.35],  # crate
        [0.85, 0.30, 0.15],  # ball
        [0.30, 0.50, 0.30],  # barrel
        [0.65, 0.65, 0.68],  # column
    ],
    dtype=np.float32,
)
_X, _Y, _Z, _XY, _0 = (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 0, 0)
# class: (u1, u2, period, contrast)
_TEXTURE = {
    0: (_X, _Y, 0.8, 0.82),
    1: (_0, _0, 1.0, 1.0),
    2: (_XY, _0, 0.5, 0.88),
    3: (_X, _0, 0.2, 0.70),
    4: (_XY, _Z, 0.2, 0.55),
    5: (_Z, _0, 0.5, 0.88),
    6: (_Z, _0, 0.35, 0.78),
    7: (_0, _0, 1.0, 1.0),
    8: (_0, _0, 1.0, 1.0),
    9: (_XY, _0, 0.15, 0.75),
    10: (_Z, _0, 0.15, 0.70),
    11: (_Z, _0, 0.25, 0.75),
    12: (_0, _0, 1.0, 1.0),
}
_TEX_U1 = np.array([_TEXTURE[c][0] for c in range(NUM_CLASSES)], dtype=np.float32)
_TEX_U2 = np.array([_TEXTURE[c][1] for c in range(NUM_CLASSES)], dtype=np.float32)
_TEX_PERIOD = np.array([_TEXTURE[c][2] for c in range(NUM_CLASSES)], dtype=np.float32)
_TEX_CONTRAST = np.array([_TEXTURE[c][3] for c in range(NUM_CLASSES)], dtype=np.float32)

MAX_BOXES, MAX_SPHERES, MAX_CYLINDERS, MAX_DECALS = 4, 2, 2, 4
# Surface ids: room faces 0-5 (2*axis + is_max_face), then 6 per box, then spheres, then 2 per cylinder.
_SURF_BOX0 = 6
_SURF_SPH0 = _SURF_BOX0 + 6 * MAX_BOXES
_SURF_CYL0 = _SURF_SPH0 + MAX_SPHERES
_EPS_T = 1e-4

EDGE_OCCLUSION, EDGE_CREASE, EDGE_CLASS, EDGE_TEXTURE = 1.0, 0.8, 0.6, 0.4


@dataclass(frozen=True)
class GenParams:
    """Everything that changes the generated arrays (hashed into the cache key)."""

    split: str = "train"
    n: int = 2000
    seed: int = 0
    resolution: int = 64
    supersample: int = 2
    noise_std: float = 0.02
    keypoint_sigma: float = 1.2  # pixels at 64x64, scaled with resolution
    version: int = GENERATOR_VERSION

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# Scene sampling (per scene, from its own generator)
# ----------------------------------------------------------------------------------------------------------


def _place(
    rng: np.random.Generator, room: np.ndarray, radius: float, taken: list[tuple[float, float, float]]
):
    """Rejection-sample a footprint centre inside the room that does not overlap earlier footprints."""
    for _ in range(30):
        x = rng.uniform(radius + 0.1, room[0] - radius - 0.1) if room[0] > 2 * radius + 0.2 else None
        y = rng.uniform(radius + 0.1, room[1] - radius - 0.1) if room[1] > 2 * radius + 0.2 else None
        if x is None or y is None:
            return None
        if all((x - a) ** 2 + (y - b) ** 2 > (radius + r + 0.05) ** 2 for a, b, r in taken):
            taken.append((x, y, radius))
            return x, y
    return None


def sample_scene(seed: int, stream: int, index: int, resolution: int) -> dict[str, np.ndarray]:
    """Draw one scene's parameters as fixed-size arrays (inactive slots flagged), ready to stack in chunks."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(index)]))
    room = np.array([rng.uniform(3.0, 7.0), rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.2)], dtype=np.float32)
    taken: list[tuple[float, float, float]] = []

    boxes = np.zeros((MAX_BOXES, 8), np.float32)  # cx, cy, a, b, h, yaw, class, phase
    box_on = np.zeros(MAX_BOXES, bool)
    for k in range(rng.integers(1, MAX_BOXES + 1)):
        cls = int(rng.choice([6, 7, 8, 9]))
        if cls == 6:
            a, b, h = rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.35), rng.uniform(1.0, 1.9)
        elif cls == 7:
            a, b, h = rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.6), rng.uniform(0.7, 0.8)
        elif cls == 8:
            a, b, h = rng.uniform(0.7, 1.0), rng.uniform(0.45, 0.8), rng.uniform(0.4, 0.6)
        else:
            s = rng.uniform(0.15, 0.35)
            a, b, h = s, s * rng.uniform(0.8, 1.2), 2 * s * rng.uniform(0.8, 1.2)
        yaw = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, np.pi / 2)
        pos = _place(rng, room, float(np.hypot(a, b)), taken)
        if pos is None:
            continue
        boxes[k] = (pos[0], pos[1], a, b, h, yaw, cls, rng.uniform(0, _TEX_PERIOD[cls]))
        box_on[k] = True

    spheres = np.zeros((MAX_SPHERES, 4), np.float32)  # cx, cy, r, phase
    sph_on = np.zeros(MAX_SPHERES, bool)
    for k in range(rng.integers(0, MAX_SPHERES + 1)):
        r = rng.uniform(0.15, 0.45)
        pos = _place(rng, room, r, taken)
        if pos is not None:
            spheres[k] = (pos[0], pos[1], r, rng.uniform(0, _TEX_PERIOD[10]))
            sph_on[k] = True

    cyls = np.zeros((MAX_CYLINDERS, 6), np.float32)  # cx, cy, r, h, class, phase
    cyl_on = np.zeros(MAX_CYLINDERS, bool)
    for k in range(rng.integers(0, MAX_CYLINDERS + 1)):
        if rng.random() < 0.6:
            cls, r, h = 11, rng.uniform(0.2, 0.35), rng.uniform(0.5, 1.0)
        else:
            cls, r, h = 12, rng.uniform(0.1, 0.25), float(room[2])
        pos = _place(rng, room, r, taken)
        if pos is not None:
            cyls[k] = (pos[0], pos[1], r, h, cls, rng.uniform(0, _TEX_PERIOD[cls]))
            cyl_on[k] = True

    # Decals: (surface id, u0, u1, z0/v0, z1/v1, class).  Walls: u runs along the wall, v is height.
    # The rug lives on the floor (surface 4): u = x range, v = y range.
    decals = np.zeros((MAX_DECALS, 6), np.float32)
    decal_on = np.zeros(MAX_DECALS, bool)
    slot = 0
    if rng.random() < 0.6:
        w, d = rng.uniform(1.0, 0.8 * room[0]), rng.uniform(1.0, 0.8 * room[1])
        x0, y0 = rng.uniform(0.1 * room[0], room[0] - w), rng.uniform(0.1 * room[1], room[1] - d)
        decals[slot], decal_on[slot] = (4, x0, x0 + w, y0, y0 + d, 3), True
        slot += 1
    if rng.random() < 0.6:
        wall = int(rng.choice([0, 1, 2, 3]))
        length = room[1] if wall < 2 else room[0]
        u0 = rng.uniform(0.2, length - 1.2)
        decals[slot], decal_on[slot] = (wall, u0, u0 + rng.uniform(0.8, 1.0), 0.0, 2.0, 5), True
        slot += 1
    for _ in range(rng.integers(0, 3)):
        wall = int(rng.choice([0, 1, 2, 3]))
        length = room[1] if wall < 2 else room[0]
        w, hh = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.9)
        u0, z0 = rng.uniform(0.2, length - w - 0.2), rng.uniform(1.0, min(2.0, room[2] - hh - 0.15))
        decals[slot], decal_on[slot] = (wall, u0, u0 + w, z0, z0 + hh, 4), True
        slot += 1

    # Camera: inside the room, away from objects, aimed roughly at a random point of the room.
    cam = None
    for _ in range(100):
        x, y = rng.uniform(0.4, room[0] - 0.4), rng.uniform(0.4, room[1] - 0.4)
        if all((x - a) ** 2 + (y - b) ** 2 > (r + 0.35) ** 2 for a, b, r in taken):
            cam = (x, y)
            break
    if cam is None:  # crowded room: drop the objects rather than put the camera inside one
        box_on[:], sph_on[:], cyl_on[:] = False, False, False
        cam = (room[0] / 2, room[1] / 2)
    cz = rng.uniform(1.0, min(1.8, room[2] - 0.4))
    tx, ty = rng.uniform(0.0, room[0]), rng.uniform(0.0, room[1])
    if taken and rng.random() < 0.7:  # mostly look at an object, as a photographer would
        tx, ty, _ = taken[rng.integers(len(taken))]
    yaw = np.arctan2(ty - cam[1], tx - cam[0]) + rng.uniform(-0.4, 0.4)
    if (tx - cam[0]) ** 2 + (ty - cam[1]) ** 2 < 0.25:
        yaw = rng.uniform(0, 2 * np.pi)
    pitch = np.deg2rad(rng.uniform(-30.0, 5.0))
    fov = np.deg2rad(rng.uniform(55.0, 75.0))
    camera = np.array([cam[0], cam[1], cz, yaw, pitch, fov], np.float32)

    light = np.array(
        [rng.uniform(0.3, room[0] - 0.3), rng.uniform(0.3, room[1] - 0.3), room[2] - 0.1], np.float32
    )
    colours = np.clip(_PALETTE + rng.uniform(-0.08, 0.08, _PALETTE.shape), 0.02, 1.0).astype(np.float32)
    contrast = _TEX_CONTRAST.copy()
    if rng.random() < 0.5:
        contrast[2] = 1.0  # plain walls in half of the rooms
    misc = np.array(
        [rng.uniform(0.25, 0.4), *rng.uniform(0.9, 1.1, 3), rng.uniform(0, 0.3)], np.float32
    )  # ambient, light tint rgb, room texture phase
    noise = rng.standard_normal((resolution, resolution, 3)).astype(np.float32)
    return {
        "room": room,
        "boxes": boxes,
        "box_on": box_on,
        "spheres": spheres,
        "sph_on": sph_on,
        "cyls": cyls,
        "cyl_on": cyl_on,
        "decals": decals,
        "decal_on": decal_on,
        "camera": camera,
        "light": light,
        "colours": colours,
        "contrast": contrast,
        "misc": misc,
        "noise": noise,
    }


# ----------------------------------------------------------------------------------------------------------
# Ray casting (vectorised over S scenes x P rays)
# ----------------------------------------------------------------------------------------------------------


def camera_rotation(camera: np.ndarray) -> np.ndarray:
    """World-from-camera rotations [S, 3, 3]; columns = camera x (right), y (down), z (forward) in world."""
    yaw, pitch = camera[:, 3], camera[:, 4]
    fwd = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], -1)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], -1)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd], -1).astype(np.float32)


def focal_length(camera: np.ndarray, width: int) -> np.ndarray:
    """Focal length in pixels from the horizontal FOV (square pixels, principal point at the centre)."""
    return (width / 2.0) / np.tan(camera[:, 5] / 2.0)


class _Hits:
    """The nearest hit so far for each of N rays (flattened scenes x pixels), with what labels need."""

    def __init__(self, n: int) -> None:
        self.t = np.full(n, np.inf, np.float32)
        self.n = np.zeros((n, 3), np.float32)  # world normal
        self.q = np.zeros((n, 3), np.float32)  # texture coordinates (object frame)
        self.cls = np.zeros(n, np.int64)
        self.surf = np.zeros(n, np.int64)
        self.phase = np.zeros(n, np.float32)

    def update(self, idx, t, valid, n, q, cls, surf, phase) -> None:
        """Keep the candidate hit for rays ``idx`` where it is valid and nearer than the current one."""
        better = valid & (t < self.t[idx])
        j = idx[better]
        self.t[j] = t[better]
        self.n[j] = n[better]
        self.q[j] = q[better]
        self.cls[j] = np.broadcast_to(cls, t.shape)[better]
        self.surf[j] = np.broadcast_to(surf, t.shape)[better]
        self.phase[j] = np.broadcast_to(phase, t.shape)[better]


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-9, np.float32(1e-9), d)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of [..., 3] arrays (einsum: much faster than ``(a * b).sum(-1)`` on size-3 axes)."""
    return np.einsum("...k,...k->...", a, b)


def _candidates(active: np.ndarray, d: np.ndarray, sid: np.ndarray, dd: np.ndarray, cam, centre, radius):
    """Indices of the rays (of scenes where the object slot is active) that meet its bounding sphere.

    Culling keeps the exact (expensive) intersection to the few rays near each object, which is what makes
    generation cost scale with object coverage rather than with objects x pixels.
    """
    idx = np.flatnonzero(active[sid])
    if idx.size == 0:
        return idx
    oc_s = cam - centre  # the origin is shared by all rays of a scene
    c_s = _dot(oc_s, oc_s) - radius**2
    s = sid[idx]
    b = _dot(d[idx], oc_s[s])
    return idx[b * b - dd[idx] * c_s[s] > 0]


def cast(sc: dict[str, np.ndarray], d: np.ndarray, sid: np.ndarray) -> _Hits:
    """Nearest hit of the rays ``o + t*d`` (d [N, 3] world, ray i belongs to scene ``sid[i]``).

    The direction's camera-z component is 1, so the hit parameter t *is* the z-buffer depth.
    """
    N = d.shape[0]
    d = _safe(d)
    o = sc["camera"][sid, :3]
    cam = sc["camera"][:, :3]
    dd = _dot(d, d)
    hits = _Hits(N)

    # Room (seen from inside): the ray leaves the box through its nearest exit plane.
    room = sc["room"][sid]
    t_ax = np.where(d > 0, room - o, -o) / d
    axis = np.argmin(t_ax, -1)
    rows = np.arange(N)
    hits.t = t_ax[rows, axis].astype(np.float32)
    d_ax = d[rows, axis]
    hits.n[rows, axis] = -np.sign(d_ax)
    is_max = (d_ax > 0).astype(np.int64)
    hits.surf = 2 * axis + is_max
    hits.cls = np.where(axis == 2, is_max, 2)
    hits.q = o + hits.t[:, None] * d
    hits.phase = sc["misc"][sid, 4].copy()
    # Decals: the class changes, the geometry does not.
    for k in range(MAX_DECALS):
        dec = sc["decals"][:, k]
        idx = np.flatnonzero(sc["decal_on"][sid, k])
        idx = idx[hits.surf[idx] == dec[sid[idx], 0].astype(np.int64)]
        dk = dec[sid[idx]]
        p = hits.q[idx]
        along = np.where(dk[:, 0] < 2, p[:, 1], p[:, 0])  # walls x=0/W run along y; y=0/D along x
        u = np.where(dk[:, 0] == 4, p[:, 0], along)
        v = np.where(dk[:, 0] == 4, p[:, 1], p[:, 2])
        inside = (u >= dk[:, 1]) & (u <= dk[:, 2]) & (v >= dk[:, 3]) & (v <= dk[:, 4])
        hits.cls[idx[inside]] = dk[inside, 5].astype(np.int64)

    eye = np.eye(3, dtype=np.float32)
    # Boxes (slab test in the box frame).
    for k in range(MAX_BOXES):
        b = sc["boxes"][:, k]
        centre = np.stack([b[:, 0], b[:, 1], b[:, 4] / 2], -1)
        radius = np.sqrt(b[:, 2] ** 2 + b[:, 3] ** 2 + (b[:, 4] / 2) ** 2)
        idx = _candidates(sc["box_on"][:, k], d, sid, dd, cam, centre, radius)
        if idx.size == 0:
            continue
        bk = b[sid[idx]]
        cy, sy = np.cos(bk[:, 5]), np.sin(bk[:, 5])
        rx, ry, rz = o[idx, 0] - bk[:, 0], o[idx, 1] - bk[:, 1], o[idx, 2]
        ol = np.stack([cy * rx + sy * ry, -sy * rx + cy * ry, rz], -1)
        di = d[idx]
        dl = _safe(np.stack([cy * di[:, 0] + sy * di[:, 1], -sy * di[:, 0] + cy * di[:, 1], di[:, 2]], -1))
        lo = np.stack([-bk[:, 2], -bk[:, 3], np.zeros_like(bk[:, 2])], -1)
        hi = np.stack([bk[:, 2], bk[:, 3], bk[:, 4]], -1)
        t1, t2 = (lo - ol) / dl, (hi - ol) / dl
        tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
        ax = np.argmax(tmin, -1)
        r = np.arange(idx.size)
        tnear = tmin[r, ax]
        valid = (tnear <= tmax.min(-1)) & (tnear > _EPS_T)
        sgn = -np.sign(dl[r, ax])
        nl = sgn[:, None] * eye[ax]
        nw = np.stack([cy * nl[:, 0] - sy * nl[:, 1], sy * nl[:, 0] + cy * nl[:, 1], nl[:, 2]], -1)
        q = ol + tnear[:, None] * dl
        surf = _SURF_BOX0 + 6 * k + 2 * ax + (sgn > 0)
        hits.update(idx, tnear, valid, nw, q, bk[:, 6].astype(np.int64), surf, bk[:, 7])

    # Spheres resting on the floor (centre height = radius).
    for k in range(MAX_SPHERES):
        s = sc["spheres"][:, k]
        centre = np.stack([s[:, 0], s[:, 1], s[:, 2]], -1)
        idx = _candidates(sc["sph_on"][:, k], d, sid, dd, cam, centre, s[:, 2])
        if idx.size == 0:
            continue
        sk = s[sid[idx]]
        c = centre[sid[idx]]
        oc = o[idx] - c
        bb = _dot(d[idx], oc)
        cc = _dot(oc, oc) - sk[:, 2] ** 2
        disc = np.maximum(bb * bb - dd[idx] * cc, 0.0)
        t = (-bb - np.sqrt(disc)) / dd[idx]
        p = o[idx] + t[:, None] * d[idx]
        n = (p - c) / sk[:, 2:3]
        q = p - c * np.array([1, 1, 0], np.float32)
        hits.update(idx, t, t > _EPS_T, n, q, 10, _SURF_SPH0 + k, sk[:, 3])

    # Vertical cylinders standing on the floor (side + top cap).
    for k in range(MAX_CYLINDERS):
        cyl = sc["cyls"][:, k]
        centre = np.stack([cyl[:, 0], cyl[:, 1], cyl[:, 3] / 2], -1)
        radius = np.sqrt(cyl[:, 2] ** 2 + (cyl[:, 3] / 2) ** 2)
        idx = _candidates(sc["cyl_on"][:, k], d, sid, dd, cam, centre, radius)
        if idx.size == 0:
            continue
        ck = cyl[sid[idx]]
        cx, cyy, r, h = ck[:, 0], ck[:, 1], ck[:, 2], ck[:, 3]
        oi, di = o[idx], d[idx]
        ox, oy = oi[:, 0] - cx, oi[:, 1] - cyy
        a2 = np.maximum(di[:, 0] ** 2 + di[:, 1] ** 2, 1e-12)
        bb = di[:, 0] * ox + di[:, 1] * oy
        cc = ox * ox + oy * oy - r * r
        disc = bb * bb - a2 * cc
        ts = (-bb - np.sqrt(np.maximum(disc, 0.0))) / a2
        ps = oi + ts[:, None] * di
        vs = (disc > 0) & (ts > _EPS_T) & (ps[:, 2] >= 0) & (ps[:, 2] <= h)
        ns = np.stack([(ps[:, 0] - cx) / r, (ps[:, 1] - cyy) / r, np.zeros_like(ts)], -1)
        tc = (h - oi[:, 2]) / di[:, 2]
        pc = oi + tc[:, None] * di
        vc = (di[:, 2] < 0) & (tc > _EPS_T) & ((pc[:, 0] - cx) ** 2 + (pc[:, 1] - cyy) ** 2 <= r * r)
        ncap = np.broadcast_to(np.array([0, 0, 1], np.float32), ns.shape)
        base = np.stack([cx, cyy, np.zeros_like(cx)], -1)
        cls = ck[:, 4].astype(np.int64)
        hits.update(idx, ts, vs, ns, ps - base, cls, _SURF_CYL0 + 2 * k, ck[:, 5])
        hits.update(idx, tc, vc, ncap, pc - base, cls, _SURF_CYL0 + 2 * k + 1, ck[:, 5])
    return hits


def texture_parity(hits: _Hits) -> np.ndarray:
    """0/1 texture cell of every hit (see ``_TEXTURE``)."""
    per = _TEX_PERIOD[hits.cls]
    c1 = np.floor((_dot(hits.q, _TEX_U1[hits.cls]) + hits.phase) / per)
    c2 = np.floor((_dot(hits.q, _TEX_U2[hits.cls]) + hits.phase) / per)
    return ((c1 + c2).astype(np.int64) % 2).astype(np.int64)


def shade(sc: dict[str, np.ndarray], d: np.ndarray, sid: np.ndarray, hits: _Hits) -> np.ndarray:
    """Lambertian RGB in [0, 1] (before noise) of every hit: [N, 3]."""
    p = sc["camera"][sid, :3] + hits.t[:, None] * d
    to_l = sc["light"][sid] - p
    dist = np.sqrt(_dot(to_l, to_l))[:, None]
    lam = np.clip(_dot(hits.n, to_l)[:, None] / np.maximum(dist, 1e-6), 0.0, 1.0)
    falloff = 1.0 / (1.0 + 0.04 * dist * dist)
    amb = sc["misc"][sid, 0:1]
    tint = sc["misc"][sid, 1:4]
    base = sc["colours"][sid, hits.cls]
    tex = np.where(texture_parity(hits) == 1, sc["contrast"][sid, hits.cls], 1.0)[:, None]
    light = amb + (1.0 - amb) * 1.6 * lam * falloff * tint
    return np.clip(base * tex * light, 0.0, 1.0)


def ray_dirs(
    sc: dict[str, np.ndarray], sid: np.ndarray, u: np.ndarray, v: np.ndarray, res: int
) -> np.ndarray:
    """World directions of rays through image points (u, v) (pixel i spans [i, i+1)) of scenes ``sid``.

    The camera-frame direction is ((u - cx)/f, (v - cy)/f, 1), so a hit's ray parameter is its z-depth.
    """
    f = focal_length(sc["camera"], res)[sid].astype(np.float32)
    dc = np.stack([(u - res / 2) / f, (v - res / 2) / f, np.ones_like(f)], -1).astype(np.float32)
    rot = camera_rotation(sc["camera"])
    return np.einsum("nij,nj->ni", rot[sid], dc).astype(np.float32)


def _boundary(surf: np.ndarray, cls: np.ndarray, parity: np.ndarray, S: int, res: int) -> np.ndarray:
    """Pixels whose surface, class or texture cell differs from a 4-neighbour (where antialiasing matters)."""
    out = np.zeros((S, res, res), bool)
    for f in (surf, cls, parity):
        g = f.reshape(S, res, res)
        dx = g[:, :, 1:] != g[:, :, :-1]
        dy = g[:, 1:, :] != g[:, :-1, :]
        out[:, :, 1:] |= dx
        out[:, :, :-1] |= dx
        out[:, 1:, :] |= dy
        out[:, :-1, :] |= dy
    return out.reshape(-1)


def _neighbour_edges(depth, surf, cls, parity, res: int) -> np.ndarray:
    """Edge strength per pixel: each differing 4-neighbour pair marks its nearer pixel."""
    S = depth.shape[0]
    z = depth.reshape(S, res, res)
    fields = [a.reshape(S, res, res) for a in (surf, cls, parity)]
    edge = np.zeros((S, res, res), np.float32)
    for axis in (1, 2):
        sl_a = [slice(None)] * 3
        sl_b = [slice(None)] * 3
        sl_a[axis], sl_b[axis] = slice(0, -1), slice(1, None)
        a, b = tuple(sl_a), tuple(sl_b)
        s_a, s_b = fields[0][a], fields[0][b]
        gap = np.abs(z[a] - z[b]) > 0.05 * np.minimum(z[a], z[b])
        diff_surf = s_a != s_b
        strength = np.where(diff_surf & gap, EDGE_OCCLUSION, np.where(diff_surf, EDGE_CREASE, 0.0))
        strength = np.where(~diff_surf & (fields[1][a] != fields[1][b]), EDGE_CLASS, strength)
        strength = np.where(
            ~diff_surf & (fields[1][a] == fields[1][b]) & (fields[2][a] != fields[2][b]),
            EDGE_TEXTURE,
            strength,
        )
        a_nearer = z[a] <= z[b]
        edge[a] = np.maximum(edge[a], np.where(a_nearer, strength, 0.0))
        edge[b] = np.maximum(edge[b], np.where(a_nearer, 0.0, strength))
    return edge.reshape(S, -1)


def _corners(sc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """World corners of the room and of every box slot: [S, 8 + 8*MAX_BOXES, 3] and an active flag."""
    S = sc["room"].shape[0]
    bits = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], np.float32)  # [8, 3]
    room = bits[None] * sc["room"][:, None, :]
    b = sc["boxes"]  # [S, K, 8]
    lx = (2 * bits[:, 0] - 1)[None, None] * b[..., 2:3]
    ly = (2 * bits[:, 1] - 1)[None, None] * b[..., 3:4]
    lz = bits[:, 2][None, None] * b[..., 4:5]
    cy, sy = np.cos(b[..., 5:6]), np.sin(b[..., 5:6])
    wx = b[..., 0:1] + cy * lx - sy * ly
    wy = b[..., 1:2] + sy * lx + cy * ly
    boxes = np.stack([wx, wy, lz], -1).reshape(S, -1, 3)
    on = np.concatenate([np.ones((S, 8), bool), np.repeat(sc["box_on"], 8, axis=1)], 1)
    return np.concatenate([room, boxes], 1).astype(np.float32), on


def _keypoints(sc: dict[str, np.ndarray], res: int, sigma: float) -> np.ndarray:
    """Heatmap [S, P]: max of Gaussians at the projected corners that are visible from the camera.

    Visibility is exact: a ray is cast from the camera to each corner, and the corner counts when nothing
    is hit before it (a z-buffer comparison fails at concave room corners, which are locally the farthest
    point, and at self-occluded back corners of boxes).
    """
    S = sc["camera"].shape[0]
    pts, on = _corners(sc)
    rel = pts - sc["camera"][:, None, :3]
    pc = np.einsum("sji,skj->ski", camera_rotation(sc["camera"]), rel)  # camera frame
    f = focal_length(sc["camera"], res)[:, None]
    z = pc[..., 2]
    zs = np.where(z > 1e-3, z, 1.0)
    u, v = f * pc[..., 0] / zs + res / 2, f * pc[..., 1] / zs + res / 2
    cand = on & (z > 0.05) & (u >= 0) & (u < res) & (v >= 0) & (v < res)
    cs, ck = np.nonzero(cand)
    visible = np.zeros_like(cand)
    if cs.size:
        t = cast(sc, rel[cs, ck] / z[cs, ck, None], cs).t  # camera-z of the direction is 1: t = depth
        zc = z[cs, ck]
        visible[cs, ck] = t >= zc * (1 - 1e-3) - 1e-3
    heat = np.zeros((S, res, res), np.float32)
    vs, vk = np.nonzero(visible)  # sorted by scene
    if vs.size:
        grid = np.arange(res, dtype=np.float32) + 0.5
        gx = np.exp(-((grid[None, :] - u[vs, vk][:, None]) ** 2) / (2 * sigma**2))  # [V, W]
        gy = np.exp(-((grid[None, :] - v[vs, vk][:, None]) ** 2) / (2 * sigma**2))  # [V, H]
        g = gy[:, :, None] * gx[:, None, :]
        scenes, starts = np.unique(vs, return_index=True)
        heat[scenes] = np.maximum.reduceat(g, starts, axis=0)
    return heat.reshape(S, -1)


def render_chunk(scenes: Sequence[dict[str, np.ndarray]], params: GenParams) -> dict[str, np.ndarray]:
    """Render a list of sampled scenes at once; returns per-scene label arrays (see ``generate``).

    Labels come from the ray through each pixel centre. With ``supersample`` k > 1 the RGB of pixels on a
    surface/class/texture boundary is the mean of k x k sub-pixel rays (adaptive antialiasing: elsewhere the
    shading is smooth and the centre ray already gives the pixel's colour).
    """
    res, sub = params.resolution, params.supersample
    sc = {k: np.stack([s[k] for s in scenes]) for k in scenes[0]}
    S, P = len(scenes), res * res
    sid = np.repeat(np.arange(S), P)
    pix = np.tile(np.arange(P), S)
    u, v = (pix % res).astype(np.float32) + 0.5, (pix // res).astype(np.float32) + 0.5
    d = ray_dirs(sc, sid, u, v, res)
    hits = cast(sc, d, sid)
    parity = texture_parity(hits)
    rgb = shade(sc, d, sid, hits)
    if sub > 1:
        sel = np.flatnonzero(_boundary(hits.surf, hits.cls, parity, S, res))
        if sel.size:
            off = (np.arange(sub, dtype=np.float32) + 0.5) / sub - 0.5
            ou, ov = np.meshgrid(off, off, indexing="xy")
            su = (u[sel, None] + ou.reshape(1, -1)).ravel()
            sv = (v[sel, None] + ov.reshape(1, -1)).ravel()
            ssid = np.repeat(sid[sel], sub * sub)
            sd = ray_dirs(sc, ssid, su, sv, res)
            rgb[sel] = shade(sc, sd, ssid, cast(sc, sd, ssid)).reshape(sel.size, sub * sub, 3).mean(1)
    rgb = rgb.reshape(S, res, res, 3)
    dirs = d.reshape(S, P, 3)
    rgb = np.clip(rgb + params.noise_std * sc["noise"], 0.0, 1.0)
    rot = camera_rotation(sc["camera"])
    n_cam = np.matmul(hits.n.reshape(S, -1, 3), rot)  # camera-from-world = rot^T
    dc = np.matmul(dirs, rot)
    n_cam = np.where((_dot(n_cam, dc) > 0)[..., None], -n_cam, n_cam)
    n_cam /= np.linalg.norm(n_cam, axis=-1, keepdims=True)
    edges = _neighbour_edges(hits.t.reshape(S, -1), hits.surf, hits.cls, parity, res)
    sigma = params.keypoint_sigma * res / 64.0
    kp = _keypoints(sc, res, sigma)
    f = focal_length(sc["camera"], res)
    return {
        "rgb": np.round(rgb * 255).astype(np.uint8),
        "seg": hits.cls.reshape(S, res, res).astype(np.uint8),
        "depth": hits.t.reshape(S, res, res).astype(np.float32),
        "normal": n_cam.reshape(S, res, res, 3).astype(np.float16),
        "edge": np.round(edges.reshape(S, res, res) * 255).astype(np.uint8),
        "keypoints": np.round(kp.reshape(S, res, res) * 255).astype(np.uint8),
        "intrinsics": np.stack([f, f, np.full(S, res / 2), np.full(S, res / 2)], -1).astype(np.float32),
    }


ARRAY_KEYS = ("rgb", "seg", "depth", "normal", "edge", "keypoints", "intrinsics")


def generate(params: GenParams, chunk_rays: int = 1 << 17) -> dict[str, np.ndarray]:
    """Generate all scenes of one split. Arrays: rgb uint8 [N,H,W,3], seg uint8 [N,H,W], depth float32
    [N,H,W] (metres), normal float16 [N,H,W,3] (camera frame), edge/keypoints uint8 [N,H,W] (x/255),
    intrinsics float32 [N,4] (fx, fy, cx, cy; pixel centres at integer + 0.5)."""
    if params.split not in SPLIT_STREAMS:
        raise ValueError(f"unknown split {params.split!r}; expected one of {sorted(SPLIT_STREAMS)}")
    res = params.resolution
    stream = SPLIT_STREAMS[params.split]
    chunk = max(1, chunk_rays // (res * res))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, params.n, chunk):
        idx = range(start, min(params.n, start + chunk))
        scenes = [sample_scene(params.seed, stream, i, res) for i in idx]
        parts.append(render_chunk(scenes, params))
    if not parts:
        empty = render_chunk([sample_scene(params.seed, stream, 0, res)], params)
        return {k: v[:0] for k, v in empty.items()}
    return {k: np.concatenate([p[k] for p in parts]) for k in ARRAY_KEYS}


# ----------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------


def cache_dir(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$ADAPMTL_CACHE``, else ``~/.cache/adapmtl``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("ADAPMTL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "adapmtl"


def cache_path(params: GenParams, root: str | Path | None = None) -> Path:
    name = (
        f"synthetic_scenes-{params.split}-{params.resolution}px-n{params.n}-s{params.seed}-{params.key()}.npz"
    )
    return cache_dir(root) / name


def _read_cache(path: Path, params: GenParams) -> dict[str, np.ndarray]:
    """Load and validate a cache file; raises DatasetError if it is corrupt or for other parameters."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in ARRAY_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise DatasetError(path, f"corrupt synthetic_scenes cache ({type(e).__name__}: {e})") from e
    if meta != asdict(params):
        raise DatasetError(path, "synthetic_scenes cache holds other generation parameters")
    n, r = params.n, params.resolution
    expected = {"rgb": (n, r, r, 3), "seg": (n, r, r), "depth": (n, r, r), "normal": (n, r, r, 3)}
    for k, shape in expected.items():
        if arrays[k].shape != shape:
            raise DatasetError(
                path, f"synthetic_scenes cache array {k} has shape {arrays[k].shape}, not {shape}"
            )
    if not np.isfinite(arrays["depth"]).all():
        raise DatasetError(path, "synthetic_scenes cache has non-finite depth")
    return arrays


@contextlib.contextmanager
def _generation_lock(path: Path):
    """Advisory lock so concurrent workers on one machine generate a split once (others wait, then read).

    Best effort: where ``fcntl`` or locking is unavailable (Windows, some network filesystems) every worker
    generates for itself, which is still correct thanks to the atomic rename.
    """
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 - held for the duration of the context
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # closing releases the lock


def load_or_generate(params: GenParams, root: str | Path | None = None) -> dict[str, np.ndarray]:
    """Return the split's arrays from the cache, generating (and atomically writing) them if needed.

    A corrupt or mismatched cache file is logged, regenerated and replaced. The write goes to a temporary
    file renamed into place, so concurrent workers never read a half-written file.
    """
    path = cache_path(params, root)
    if path.exists():
        try:
            return _read_cache(path, params)
        except DatasetError as e:
            log.warning("regenerating: %s", e)
    with _generation_lock(path):
        if path.exists():  # another worker may have written it while we waited
            try:
                return _read_cache(path, params)
            except DatasetError as e:
                log.warning("regenerating: %s", e)
        t0 = time.perf_counter()
        arrays = generate(params)
        log.info("generated %d synthetic scenes in %.1fs", params.n, time.perf_counter() - t0)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.npz", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(asdict(params), sort_keys=True)), **arrays)
            os.replace(tmp, path)
        except OSError as e:  # a read-only cache dir must not stop training
            log.warning("could not write synthetic_scenes cache %s: %s", path, e)
    return arrays


# ----------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------

_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class SyntheticScenes(Dataset):
    """One split of synthetic scenes as a torch Dataset returning the INTERNAL_API batch dict."""

    def __init__(
        self,
        split: str = "train",
        *,
        tasks: Sequence[str] | None = None,
        root: str | Path | None = None,
        resolution: int | None = None,
        augment: bool | None = None,
        seed: int = 0,
        n: int | None = None,
        n_train: int | None = None,
        n_val: int | None = None,
        n_test: int | None = None,
        supersample: int = 2,
        noise_std: float = 0.02,
        image_norm: str = "center",
        class_set: str = "full",
    ) -> None:
        if split not in SPLIT_STREAMS:
            raise ValueError(
                f"unknown split {split!r} for synthetic_scenes; expected one of {sorted(SPLIT_STREAMS)}"
            )
        if image_norm not in ("center", "imagenet"):
            raise ValueError(f"image_norm must be 'center' or 'imagenet', got {image_norm!r}")
        if class_set not in CLASS_SETS:
            raise ValueError(f"class_set must be one of {CLASS_SETS}, got {class_set!r}")
        self.tasks = tuple(TASK_CHANNELS) if tasks is None else tuple(tasks)
        for t in self.tasks:
            if t not in TASK_CHANNELS:
                raise ValueError(
                    f"unknown task {t!r} for synthetic_scenes; available: {sorted(TASK_CHANNELS)}"
                )
        res = int(resolution or 64)
        if res < 8:
            raise ValueError(f"resolution must be >= 8, got {res}")
        if supersample not in (1, 2, 3, 4):
            raise ValueError(f"supersample must be 1-4, got {supersample}")
        self.split = split
        per_split = {"train": n_train, "val": n_val, "test": n_test}[split]
        size = n if n is not None else per_split if per_split is not None else DEFAULT_SIZES[split]
        if int(size) < 1:
            raise ValueError(f"synthetic_scenes {split} size must be >= 1, got {size}")
        self.params = GenParams(
            split=split,
            n=int(size),
            seed=int(seed),
            resolution=res,
            supersample=int(supersample),
            noise_std=float(noise_std),
        )
        self.image_norm = image_norm
        self.arrays = load_or_generate(self.params, root)
        self.intrinsics = self.arrays["intrinsics"]
        self.augment = (split == "train") if augment is None else bool(augment)
        self._flip = HorizontalFlip(0.5, negate_normal_x=True) if self.augment else None
        self.class_set = class_set
        self.class_names = COARSE_CLASSES if class_set == "coarse" else CLASSES
        #: output channels per task for this instance (the class set decides the segmentation head's)
        self.task_channels = {**TASK_CHANNELS, "segment_semantic": len(self.class_names)}

    def __len__(self) -> int:
        return self.params.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a = self.arrays
        image = torch.from_numpy(a["rgb"][i]).permute(2, 0, 1).float() / 255.0
        labels: dict[str, torch.Tensor] = {}
        if "segment_semantic" in self.tasks:
            seg = a["seg"][i].astype(np.int64)
            if self.class_set == "coarse":
                seg = _COARSE_OF[seg]
            labels["segment_semantic"] = torch.from_numpy(seg)[None]
        if "normal" in self.tasks:
            n = torch.from_numpy(a["normal"][i].astype(np.float32)).permute(2, 0, 1)
            labels["normal"] = n / n.norm(dim=0, keepdim=True).clamp_min(1e-6)
        if "depth_zbuffer" in self.tasks:
            labels["depth_zbuffer"] = torch.from_numpy(a["depth"][i].copy())[None]
        if "keypoints2d" in self.tasks:
            labels["keypoints2d"] = torch.from_numpy(a["keypoints"][i]).float()[None] / 255.0
        if "edge_texture" in self.tasks:
            labels["edge_texture"] = torch.from_numpy(a["edge"][i]).float()[None] / 255.0
        if self._flip is not None:
            specs = {"normal": LabelSpec(normal=True), "segment_semantic": LabelSpec(255)}
            image, labels, _ = self._flip(image, labels, specs)
        if self.image_norm == "center":
            image = image - 0.5
        else:
            image = (image - _IMAGENET_MEAN) / _IMAGENET_STD
        out: dict[str, torch.Tensor] = {"image": image.float()}
        for key, value in labels.items():
            out[key] = value[0] if key == "segment_semantic" else value
        if "depth_zbuffer" in self.tasks:
            out["depth_zbuffer_mask"] = torch.ones((1, *image.shape[-2:]), dtype=torch.bool)
        return out


def build(
    split: str,
    *,
    tasks: Sequence[str] | None = None,
    root: str | Path | None = None,
    resolution: int | None = None,
    augment: bool | None = None,
    seed: int = 0,
    **opts: Any,
) -> SyntheticScenes:
    """Registry entry point; ``root`` is the cache directory.

    Options: ``n`` (this split's size) or ``n_train``/``n_val``/``n_test`` (defaults 2000/200/500),
    ``supersample`` (1-4, default 2), ``noise_std`` (0.02), ``image_norm`` (``center`` | ``imagenet``),
    ``class_set`` (``full``: 13 classes, default | ``coarse``: 6, see ``COARSE_CLASSES``).
    """
    allowed = {"n", "n_train", "n_val", "n_test", "supersample", "noise_std", "image_norm", "class_set"}
    check_options("synthetic_scenes", opts, allowed)
    return SyntheticScenes(
        split, tasks=tasks, root=root, resolution=resolution, augment=augment, seed=seed, **opts
    )
