"""Question 2 of the performance issue: does the training loop synchronise device→host per step?

On a GPU, every `.item()`, `.tolist()`, `bool(tensor)`, `.cpu()`/`.numpy()` of a device tensor stalls the
host until the GPU drains its queue. We count those calls made from project code while training, run the
loop for N1 and N2 steps with logging/validation/checkpointing only at the end, and report the difference
per extra step — the per-step sync count. For contrast, the same is measured for a "naive" loop that reads
every layer's sparsity each step (what the official AdapMTL code does).

    .venv/bin/python benchmarks/bench_host_syncs.py [--methods dense adapmtl snip ...]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYNC_METHODS = ("item", "tolist", "__bool__", "cpu", "numpy", "__float__", "__int__")


#: Host-side data pipeline: datasets and transforms work on CPU tensors before ``to_device`` (in DataLoader
#: workers on a GPU run), so their ``bool()``/``item()`` calls are never device syncs and are not counted.
HOST_SIDE = ("trainers/data/", "trainers/loader.py")


def _project_site(stack: traceback.StackSummary) -> str | None:
    """``file:line`` of the caller when it is project code outside the host-side data pipeline, else None.

    Only the immediate caller counts: ``.item()`` calls inside torch itself (CPU Adam reads its CPU-resident
    ``step`` counters that way) are not the loop's syncs and would not touch the GPU on a CUDA run.
    """
    caller = stack[-1]
    if str(ROOT) not in caller.filename or "/.venv/" in caller.filename:
        return None
    rel = Path(caller.filename).relative_to(ROOT).as_posix()
    if rel.startswith("benchmarks/"):
        return None
    for frame in stack:
        if str(ROOT) in frame.filename and "/.venv/" not in frame.filename and \
                Path(frame.filename).relative_to(ROOT).as_posix().startswith(HOST_SIDE):
            return None
    return f"{rel}:{caller.lineno}"


class SyncCounter:
    """Patches torch.Tensor methods that force a host sync; counts calls made by project code outside the
    host-side data pipeline (on a CPU run the loop's tensors are host tensors too, so this counts the calls that
    *would* synchronise on a GPU)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self._orig: dict[str, object] = {}

    def __enter__(self) -> SyncCounter:
        for name in SYNC_METHODS:
            orig = getattr(torch.Tensor, name)
            self._orig[name] = orig

            def wrapper(tensor, *a, __orig=orig, __name=name, **k):
                site = _project_site(traceback.extract_stack()[:-1])
                if site is not None:
                    self.calls[f"{site} {__name}"] += 1
                return __orig(tensor, *a, **k)

            setattr(torch.Tensor, name, wrapper)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, orig in self._orig.items():
            setattr(torch.Tensor, name, orig)


def run(method: str, steps: int, workdir: Path) -> collections.Counter[str]:
    from trainers.config import RunConfig
    from trainers.engine import train

    target = None if method == "dense" else 0.9
    cfg = RunConfig(
        data={"name": "synthetic_scenes", "resolution": 32, "options": {"n_train": 64, "n_val": 8, "n_test": 8}},
        model={"arch": "resnet34", "width": 0.125},
        train={"iterations": steps, "batch_size": 8, "log_every": steps, "val_every": steps,
               "checkpoint_every": steps, "lr_decay_every": 1000},
        method=method, target_sparsity=target,
        method_params={"dense_iterations": 4} if method == "lth" else {},
    )
    with SyncCounter() as counter:
        train(cfg, None, workdir=workdir)
    return counter.calls


def per_step(method: str, n1: int, n2: int) -> tuple[float, dict[str, float], int]:
    """Syncs per extra step, where they happen, and the syncs of the N1-step run (its one logging interval,
    validation, checkpoint and final test: proof that the counter does see the loop's syncs)."""
    with tempfile.TemporaryDirectory() as tmp:
        a = run(method, n1, Path(tmp) / "a")
        b = run(method, n2, Path(tmp) / "b")
    diff = {k: (b[k] - a.get(k, 0)) / (n2 - n1) for k in b if b[k] != a.get(k, 0)}
    return sum(diff.values()), diff, sum(a.values())


def naive_per_step(model: torch.nn.Module) -> int:
    """Syncs of a loop that copies each layer's effective weight to the host every step (official code)."""
    from trainers.sparsity import prunable_weights

    return sum(len(layers) for layers in prunable_weights(model).values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["dense", "adapmtl", "snip", "imp", "disparse", "lth"])
    parser.add_argument("--n1", type=int, default=8)
    parser.add_argument("--n2", type=int, default=24)
    args = parser.parse_args(argv)
    os.environ.setdefault("ADAPMTL_CACHE", str(Path(tempfile.gettempdir()) / "adapmtl-bench-cache"))
    torch.set_num_threads(1)
    import trainers.adapmtl
    import trainers.soft_threshold_fused
    from trainers.models import build_model

    # AdapMTL reads its "fix the mask now" flag and (round 3) each group's α on the host only when they live
    # on the CPU, where that read is free; count the accelerator code path instead (what a GPU run executes).
    trainers.adapmtl.CPU_FLAG_SHORTCUT = False
    trainers.soft_threshold_fused.CPU_SCALAR_ALPHA = False

    naive = naive_per_step(build_model("resnet34", {"segment_semantic": 13, "normal": 3, "depth_zbuffer": 1,
                                                     "keypoints2d": 1, "edge_texture": 1}, width=0.125))
    print(f"{'method':10s} {'syncs/step':>10s} {'per run':>8s}  where (per step)")
    for method in args.methods:
        total, diff, run_total = per_step(method, args.n1, args.n2)
        where = ", ".join(f"{k} ×{v:.2f}" for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:4]) or "-"
        print(f"{method:10s} {total:10.2f} {run_total:8d}  {where}")
    print(f"{'naive':10s} {naive:10d} {'':8s}  one .cpu() per prunable layer per step (official AdapMTL logging)")
    print("per run = syncs of the whole N1-step run (one logging interval, validation, checkpoint, test)")
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_host_syncs.py --n1 {args.n1} --n2 {args.n2}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
