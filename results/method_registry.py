"""The method registry's metadata (display name, citation) and parameter defaults, without importing torch.

Why: tables cite methods and label rows from each method's registry metadata (DESIGN §6, Composer-style
``metadata``), but the method modules import torch, and importing torch is 1.5 s of the 2-3 s an
``adapmtl table`` call took on a cached store (benchmarks/RESULTS.md Q7). The registry is the single source
of truth; this module caches what results need from it in one small JSON file, keyed by a fingerprint of
the registry's source files (path, size, mtime of every module under ``trainers/`` and ``baselines/``), so
editing or adding a method invalidates it, and a fresh cache is read without importing torch, pydantic or
the methods. Any failure to read or write the cache falls back to asking the registry directly.

Cache location: ``$ADAPMTL_CACHE_DIR`` (shared with the results cache), else ``$XDG_CACHE_HOME/adapmtl``,
else ``~/.cache/adapmtl``.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

CACHE_FORMAT = "adapmtl-methods-1"
#: packages whose sources make up the registry (the registry module and every method module)
SOURCE_PACKAGES: tuple[str, ...] = ("trainers", "baselines")
_EMPTY: dict[str, Any] = {"title": None, "year": None, "bibtex_key": None, "bibtex": "", "display_name": None}


def cache_dir() -> Path:
    env = os.environ.get("ADAPMTL_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "adapmtl"


def source_fingerprint() -> str | None:
    """Digest of the registry's source files (None when the packages cannot be located)."""
    entries: list[tuple[str, int, int]] = []
    for package in SOURCE_PACKAGES:
        try:
            spec = find_spec(package)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for location in spec.submodule_search_locations:
            for path in sorted(Path(location).glob("*.py")):
                st = path.stat()
                entries.append((str(path), st.st_size, st.st_mtime_ns))
    return hashlib.sha256(json.dumps([CACHE_FORMAT, entries]).encode()).hexdigest()[:20]


@lru_cache(maxsize=1)
def registry_info() -> dict[str, dict[str, Any]]:
    """``{method: {"title", "year", "bibtex_key", "bibtex", "display_name", "defaults"}}`` for every
    registered method: from the cache when it matches the sources, else from the registry (and cached)."""
    fingerprint = source_fingerprint()
    path = cache_dir() / f"methods-{fingerprint}.json" if fingerprint else None
    if path is not None:
        try:
            data = json.loads(path.read_text())
            if data.get("format") == CACHE_FORMAT:
                return data["methods"]
        except (OSError, ValueError, KeyError):
            pass
    info = _from_registry()
    if path is not None and info:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"format": CACHE_FORMAT, "methods": info}, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError:
            pass
    return info


def _from_registry() -> dict[str, dict[str, Any]]:
    try:
        from trainers.methods import METHOD_REGISTRY, method_class, method_metadata
    except Exception:  # registry not importable here (no torch, partial install): nothing to cite
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name in METHOD_REGISTRY:
        try:
            meta = dict(method_metadata(name))
            params = method_class(name).Params()
            meta["defaults"] = {k: str(v) for k, v in params.model_dump(mode="json").items()}
        except Exception:  # one broken optional method must not hide the others
            continue
        out[name] = meta
    return out


def method_metadata(name: str) -> dict[str, Any]:
    """Title, year, BibTeX key/entry and display name of a registered method (empty fields if unknown)."""
    meta = registry_info().get(name)
    return {k: meta.get(k, v) for k, v in _EMPTY.items()} if meta else dict(_EMPTY)


def param_defaults(name: str) -> dict[str, str]:
    """The method's parameter defaults as strings (as MLflow params are), {} for an unknown method."""
    return dict((registry_info().get(name) or {}).get("defaults") or {})
