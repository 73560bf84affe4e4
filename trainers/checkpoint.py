"""Checkpoints that resume a run on the same trajectory: weights, optimizer, schedule, RNG, method, data.

Loading never runs code: every checkpoint (and dense reference) is read with ``torch.load(weights_only=True)``,
whose unpickler builds only tensors and plain containers. A checkpoint can come from Ray Train storage
(``s3://...``) or a shared work dir, so anyone able to write there would otherwise run code in every process
that resumes from it. Hence the RNG states are stored as tensors and plain data (NumPy's state as an int64
tensor, not an ndarray). Checkpoints written before that stored NumPy's state as an ndarray: exactly the
NumPy types it needs are allow-listed for those, in a scoped context, and nothing else.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects that only a full (code-running) unpickler could build: refused, unread."""


def rng_state() -> dict[str, Any]:
    """Every RNG the run draws from, as tensors and plain Python data (loadable with ``weights_only``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),  # (version, tuple of ints, float | None)
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    if isinstance(npy, dict):
        keys = npy["keys"].numpy().astype(np.uint32)
        np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    else:  # a checkpoint written before the RNG state was plain data
        np.random.set_state(npy)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: Path) -> None:
    """Write to a temporary file and rename, so a crash never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _legacy_numpy_rng_globals() -> list[Any]:
    """The globals of ``np.random.get_state()``'s ndarray in old checkpoints, and nothing more."""
    from numpy._core.multiarray import _reconstruct

    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load(path: Path | str, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint without running code; a refused or unreadable file is a one-line error naming it."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_legacy_numpy_rng_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED.search(str(exc))
        what = found.group(1) if found else "objects other than tensors and plain data"
        raise UnsafeCheckpointError(f"refusing to load checkpoint {path}: it holds {what} (only tensors and "
                                    "plain data are allowed; unpickling it could run code)") from None
    except Exception as exc:  # a torn or foreign file: say which one
        text = str(exc).strip().splitlines()
        raise RuntimeError(f"cannot read checkpoint {path}: {text[0] if text else type(exc).__name__}") from None
