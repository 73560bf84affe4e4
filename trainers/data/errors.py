"""The one exception every dataset raises for bad data on disk.

A sweep fails fast and the CLI prints exactly one line, so the message must name the offending file or root
on a single line (no traceback needed to find what to fix).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


class DatasetError(ValueError):
    """A dataset root, index file or sample file is missing, unreadable or malformed."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # keep the message on one line
        super().__init__(f"{self.problem}: {self.path}")


# Checked readers: every failure becomes a one-line DatasetError naming the file, so a broken sample in a
# 1,449-image tree is found from the message alone.


def require_dir(path: str | Path, what: str = "dataset root") -> Path:
    """Return ``path`` as a Path, or raise if it is not an existing directory."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise DatasetError(p, f"{what} not found (expected a directory)")
    return p


def require_file(path: str | Path, what: str = "file") -> Path:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(p, f"{what} not found")
    return p


def load_json(path: str | Path) -> Any:
    p = require_file(path, "index file")
    try:
        return json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(p, f"cannot parse JSON index ({type(e).__name__}: {e})") from e


def read_png(path: str | Path, mode: str | None = None) -> np.ndarray:
    """Decode an image file with PIL (optionally converting ``mode``); 16-bit PNGs keep their values."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            if mode is not None and im.mode != mode:
                im = im.convert(mode)
            return np.array(im)
    except FileNotFoundError as e:
        raise DatasetError(p, "image file not found") from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DatasetError(p, f"corrupt or unreadable image ({type(e).__name__}: {e})") from e


def read_npy(path: str | Path) -> np.ndarray:
    p = Path(path)
    try:
        return np.load(p, allow_pickle=False)
    except FileNotFoundError as e:
        raise DatasetError(p, "array file not found") from e
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(p, f"corrupt or unreadable .npy ({type(e).__name__}: {e})") from e


def check_options(dataset: str, opts: dict, allowed: set[str]) -> None:
    """Reject dataset options the loader does not know, naming them (one place for all loaders)."""
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"unknown {dataset} option(s) {unknown}; allowed: {sorted(allowed)}")
