"""Flush denormal floats to zero on the thread that trains on the CPU (x86 FTZ/DAZ, ``torch.set_flush_denormal``).

Why: at the CPU sizes this project trains (64² inputs, output stride 8: an 8×8 feature map), the ASPP heads'
dilated branches (rates 12, 18 and 24; 6 in part) see only padding through their eight off-centre taps. Those weights get no
gradient but the L2 decay, so Adam walks them to zero and, after ~250 steps, into the denormal range (below
1.18e-38): on the quickstart's dense reference 80 % of those branches' weights and their Adam moments were
denormal by step 400. Every convolution and optimizer op that reads them then takes the processor's slow
path. On an Intel Xeon host the dense step went from 0.08 s to 0.26-0.30 s (3.3×) and stayed there; a run of
the sweep's reference, which every group waits for, took 6 min instead of 2 (benchmarks/RESULTS.md, round 6).
Pruning methods mostly escape it (their masks zero those weights exactly), which also made method costs
unequal for a reason that has nothing to do with the methods. AMD hosts pay far less for denormals, which is
why the earlier rounds never saw it.

What it changes: values below 1.18e-38 in magnitude become 0 in the training thread's float arithmetic. The
weights concerned multiply padding only, and the threshold is ~30 orders of magnitude below any weight or
gradient that moves the model, but the low bits of a run can differ from an IEEE run once denormals appear
and a trajectory amplifies them like any rounding change (the quickstart's dense run: the same test metrics
bit for bit after 400 iterations, within the seed spread after 1,500), so it is a named setting: every run records ``numerics/flush_denormals`` (a tag),
docs/FIDELITY.md lists it, and ``ADAPMTL_FLUSH_DENORMALS=0`` keeps IEEE denormals. CUDA runs are left alone
(the GPU's arithmetic is not affected by the host's setting).

Scope: the x86 MXCSR register is per thread, so the setting is made on the thread that calls
``trainers.engine.train`` (Ray Tune runs each trial's function in a thread of its own) and restored when the
run ends; threads created by that thread meanwhile inherit it. Intra-op worker threads that already existed
keep theirs: with ``torch.set_num_threads(1)`` (every sweep trial here) there are none.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from results import schema as keys

__all__ = ["ENV_SWITCH", "TAG", "flush_active", "flush_denormals", "wanted"]

#: ``ADAPMTL_FLUSH_DENORMALS=0`` keeps IEEE denormals on the CPU.
ENV_SWITCH = "ADAPMTL_FLUSH_DENORMALS"
#: The run tag that records which arithmetic the run's CPU steps used ("true" / "false").
TAG = keys.TAG_FLUSH_DENORMALS


def wanted(device: torch.device) -> bool:
    """Whether a run on ``device`` flushes denormals: CPU runs, unless the switch says no."""
    off = os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")
    return device.type == "cpu" and not off


def flush_active() -> bool:
    """Whether this thread flushes denormals now (torch has no getter: a product that underflows tells)."""
    return (torch.full((1,), 2e-38) * 0.01).item() == 0.0


@contextlib.contextmanager
def flush_denormals(device: torch.device) -> Iterator[bool]:
    """Flush denormals on this thread for the block when :func:`wanted` (and the CPU supports it); yields
    whether the block runs flushed. The thread's previous setting is restored after it."""
    before = flush_active()
    on = before
    if wanted(device) and not before:
        on = torch.set_flush_denormal(True)  # False where the CPU has no FTZ/DAZ: IEEE arithmetic then
    try:
        yield on
    finally:
        if on != before:
            torch.set_flush_denormal(before)
