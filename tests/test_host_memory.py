"""trainers.host_memory: freed blocks stay in the process (no page faults when the same sizes come back).

Each case runs in a fresh interpreter: malloc's thresholds are process-wide and cannot be undone.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0].startswith("glibc"),
                                reason="glibc's malloc only")

#: Four rounds of allocating, touching and freeing 10 × 4 MiB (what a step does with its gradients and
#: temporaries); prints whether the thresholds were set and the minor page faults of each round.
_CHILD = r"""
import json, resource, sys
import torch
from trainers.host_memory import retain_freed_memory
applied = retain_freed_memory()
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.ones(1 << 20) for _ in range(10)]
    del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": [faults() for _ in range(4)]}))
"""


def _child(**env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, env=full,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_blocks_are_reused_without_page_faults():
    kept = _child()
    assert kept["applied"]
    pages = 10 * (4 << 20) // 4096  # 10,240 pages are touched per round
    # once the heap has grown to the round's size, a round touches no fresh page
    assert kept["faults"][-1] < 0.05 * pages


def test_a_user_tuned_malloc_is_left_alone():
    """A user's own setting wins. Here it is one that hands every 4 MiB block back to the OS (a fixed 128 KiB
    mmap threshold): every round faults every page again, which also shows that the count above sees the
    faults it claims are gone (glibc's own defaults adapt their threshold, so they are no stable control)."""
    hostile = _child(MALLOC_MMAP_THRESHOLD_="131072")
    assert not hostile["applied"]
    pages = 10 * (4 << 20) // 4096
    assert min(hostile["faults"]) > 0.9 * pages
    assert not _child(ADAPMTL_RETAIN_FREED_MEMORY="0")["applied"]
