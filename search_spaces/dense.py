"""The dense reference has nothing to tune: it is trained once per (dataset, arch, seed)."""

from __future__ import annotations

from typing import Any

FIXED: dict[str, Any] = {}


def space() -> dict[str, Any]:
    return {}
