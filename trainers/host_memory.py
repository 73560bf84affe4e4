"""Keep freed host memory inside the training process instead of handing it back to the OS every step.

Why: a CPU training step allocates and frees the same weight- and activation-sized tensors every step (the
weight gradients, Adam's out-of-place temporaries, the activations). glibc's malloc serves blocks above its
mmap threshold (128 KiB at start, raised dynamically up to 32 MiB) with ``mmap`` and trims the top of the heap
once more than its trim threshold is free, so those blocks go back to the OS when freed and every fresh one
page-faults on first touch. On MobileNetV2 w0.125 that was ~1,600 minor faults per dense step and ~2,600 per
AdapMTL step, 5-7 % of the step (benchmarks/RESULTS.md, Q1 round 5): the kernel zeroing pages, not training.

How: fixed ``M_MMAP_THRESHOLD`` (32 MiB, glibc's upper bound: blocks below it come from the heap and are
reused) and ``M_TRIM_THRESHOLD`` (1 GiB: the heap's free top is kept) via ``mallopt``. The process's
resident memory then stays at its peak instead of breathing with each step; values and results are
unchanged (only where the bytes live). This is the same remedy as preloading jemalloc or tcmalloc, which
PyTorch's CPU performance guide recommends, without a preload.

Not applied when malloc is not glibc's, when the user already tunes it (``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` in the environment, or jemalloc/tcmalloc in ``LD_PRELOAD``), or with
``ADAPMTL_RETAIN_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["ENV_SWITCH", "retain_freed_memory"]

#: ``ADAPMTL_RETAIN_FREED_MEMORY=0`` leaves malloc's defaults alone.
ENV_SWITCH = "ADAPMTL_RETAIN_FREED_MEMORY"

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit hosts (DEFAULT_MMAP_THRESHOLD_MAX)
_TRIM_THRESHOLD = 1024 * 1024 * 1024

_applied: bool | None = None


def _user_tunes_malloc() -> bool:
    if any(os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return True
    preload = os.environ.get("LD_PRELOAD", "")
    return any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc"))


def retain_freed_memory() -> bool:
    """Set glibc's thresholds once per process (see the module doc); returns whether they are in force."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off") or _user_tunes_malloc():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # only glibc has gnu_get_libc_version: another libc's mallopt numbers mean something else
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _applied
