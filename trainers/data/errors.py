"""The one exception every dataset raises for bad data on disk.

A sweep fails fast and the CLI prints exactly one line, so the message must name the offending file or root
on a single line (no traceback needed to find what to fix).
"""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset root, index file or sample file is missing, unreadable or malformed."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # keep the message on one line
        super().__init__(f"{self.problem}: {self.path}")
