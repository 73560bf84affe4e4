"""Question 4 of the performance issue (CUDA only): training images/s of the full-size 3-task model, fp32 vs
bf16 autocast + channels_last, the fraction of time the GPU is busy, and the metric check that decides whether
the fast path may be the default.

Model: DeepLab-ResNet34 (width 1) with the three NYUv2-shaped heads (13-class segmentation, normals, depth), at
321×321, batch 16, dense, Adam as the engine. Data: synthetic scenes at 321×321 through the engine's own
``BatchStream`` (``--workers`` DataLoader processes, pinned memory), so data loading is part of the loop as in
a real run — the busy fraction shows whether it starves the GPU.

Variants (same weights at the start, same batches):

* ``fp32``            — NCHW, fp32 (``precision: fp32, channels_last: false``)
* ``fp32+cl``         — channels_last, fp32 (the engine's current CUDA default: ``precision: auto`` = fp32)
* ``bf16+cl``         — channels_last + ``torch.autocast(dtype=bfloat16)`` (``precision: bf16``)

Per variant: ``--warmup`` steps (cuDNN autotuning, allocator), then ``--steps`` timed with a pair of
``torch.cuda.Event`` around the whole window (host waits only at its end); images/s = batch·steps/elapsed.
Busy fraction: a ``torch.profiler`` trace of ``--profile-steps`` further steps; the union of the CUDA kernel
and memcpy intervals divided by the window's wall time (1.0 = the GPU never waits for the host or the data).
Host syncs: the same steps under ``torch.cuda.set_sync_debug_mode("warn")``; the number of synchronising calls
per step is printed (expected 0 between logging intervals, see Q2).

Metric check: the fp32 model is trained ``--check-steps`` steps, then the validation metrics are computed from
the same weights with fp32 and with bf16 autocast; and a bf16 run from the same init is trained the same
steps and its validation metrics are compared with the fp32 run's. The note in RESULTS.md records the
differences; bf16 becomes the default only where they are within noise.

    .venv/bin/python benchmarks/bench_gpu_throughput.py [--steps 30 --warmup 10 --workers 4]

Prints "skipped: no CUDA" and exits 0 on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = ("segment_semantic", "normal", "depth_zbuffer")


@dataclass(frozen=True)
class Variant:
    name: str
    channels_last: bool
    bf16: bool


VARIANTS = (Variant("fp32", False, False), Variant("fp32+cl", True, False), Variant("bf16+cl", True, True))


@dataclass
class Setup:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    tasks: dict[str, Any]
    stream: Callable[[], dict[str, torch.Tensor]]
    variant: Variant


def build(variant: Variant, args: argparse.Namespace, device: torch.device, init: dict[str, torch.Tensor],
          seed: int = 0) -> Setup:
    from trainers.data import DATASETS, build_dataset
    from trainers.loader import BatchStream
    from trainers.models import build_model
    from trainers.tasks import get_task

    info = DATASETS["synthetic_scenes"]
    model = build_model("resnet34", {t: info.task_channels[t] for t in TASKS}, width=1.0).to(device)
    model.load_state_dict(init)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ds = build_dataset("synthetic_scenes", "train", tasks=list(TASKS), resolution=args.resolution, augment=True,
                       n_train=args.images, n_val=args.val_images, n_test=1)
    stream = BatchStream(ds, batch_size=args.batch, seed=seed, device=device, num_workers=args.workers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999), weight_decay=1e-4)
    tasks = {t: get_task(t, "synthetic_scenes") for t in TASKS}
    model.train()
    return Setup(model, opt, tasks, stream, variant)


def autocast(setup: Setup) -> contextlib.AbstractContextManager[Any]:
    if setup.variant.bf16:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step(s: Setup, loss_sum: torch.Tensor) -> None:
    """The engine's dense step (no per-step host read: losses are accumulated on the device)."""
    batch = s.stream()
    if s.variant.channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    with autocast(s):
        out = s.model(batch["image"])
    losses = [task.loss(out[t].float(), batch) for t, task in s.tasks.items()]
    total = sum(losses)
    s.optimizer.zero_grad(set_to_none=True)
    total.backward()
    s.optimizer.step()
    loss_sum += total.detach()


def timed(s: Setup, steps: int) -> float:
    """Seconds for ``steps`` steps: CUDA events around the window, one wait at its end."""
    loss_sum = torch.zeros((), device="cuda")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(steps):
        step(s, loss_sum)
    end.record()
    end.synchronize()
    if not torch.isfinite(loss_sum):
        raise RuntimeError(f"{s.variant.name}: non-finite loss")
    return start.elapsed_time(end) / 1000.0


def busy_fraction(s: Setup, steps: int) -> float:
    """Union of the CUDA kernel/memcpy/memset intervals over the host wall time of ``steps`` profiled steps
    (ending with a synchronize, so the window covers all the GPU work it launched)."""
    from torch.profiler import ProfilerActivity, profile

    loss_sum = torch.zeros((), device="cuda")
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step(s, loss_sum)
        torch.cuda.synchronize()
        wall_us = (time.perf_counter() - t0) * 1e6
    intervals = []
    for ev in prof.events():
        dev = getattr(ev, "device_type", None)
        if dev is not None and "CUDA" in str(dev) and ev.time_range.elapsed_us() > 0:
            intervals.append((ev.time_range.start, ev.time_range.end))
    intervals.sort()
    busy, cur_s, cur_e = 0.0, None, None
    for a, b in intervals:
        if cur_e is None or a > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    if cur_e is not None:
        busy += cur_e - cur_s
    return min(1.0, busy / max(wall_us, 1.0))


def sync_calls_per_step(s: Setup, steps: int) -> float:
    """Synchronising CUDA calls per step, counted by ``torch.cuda.set_sync_debug_mode('warn')``."""
    loss_sum = torch.zeros((), device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                step(s, loss_sum)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return sum("synchroniz" in str(w.message) for w in caught) / steps


@torch.no_grad()
def val_metrics(model: nn.Module, tasks: Mapping[str, Any], args: argparse.Namespace, device: torch.device,
                bf16: bool) -> dict[str, dict[str, float]]:
    from trainers.data import build_dataset
    from trainers.engine import evaluate
    from trainers.loader import eval_loader

    ds = build_dataset("synthetic_scenes", "val", tasks=list(TASKS), resolution=args.resolution, augment=False,
                       n_train=args.images, n_val=args.val_images, n_test=1)
    ac = (lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)) if bf16 else None
    return evaluate(model, eval_loader(ds, args.batch), tasks, device, None, ac)


def metric_check(args: argparse.Namespace, device: torch.device, init: dict[str, torch.Tensor]) -> None:
    """fp32-trained weights evaluated in fp32 vs bf16; and bf16-trained vs fp32-trained (same init, batches)."""
    runs = {}
    for v in (Variant("fp32+cl", True, False), Variant("bf16+cl", True, True)):
        torch.manual_seed(0)
        s = build(v, args, device, init, seed=1)
        timed(s, args.check_steps)
        runs[v.name] = s
    fp32 = runs["fp32+cl"]
    m_fp32 = val_metrics(fp32.model, fp32.tasks, args, device, bf16=False)
    m_fp32_eval_bf16 = val_metrics(fp32.model, fp32.tasks, args, device, bf16=True)
    m_bf16 = val_metrics(runs["bf16+cl"].model, fp32.tasks, args, device, bf16=True)
    print(f"\nmetric check after {args.check_steps} steps ({args.val_images} val images):")
    print(f"  {'task/metric':32s} {'fp32':>9s} {'eval bf16':>10s} {'train bf16':>11s}")
    for t, ms in m_fp32.items():
        for k, v in ms.items():
            print(f"  {t + '/' + k:32s} {v:9.4f} {m_fp32_eval_bf16[t][k]:10.4f} {m_bf16[t][k]:11.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=321)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    parser.add_argument("--images", type=int, default=128, help="synthetic training images (rendered once)")
    parser.add_argument("--val-images", type=int, default=64)
    parser.add_argument("--check-steps", type=int, default=200, help="0 = no metric check")
    args = parser.parse_args(argv)
    flags = " ".join(argv if argv is not None else sys.argv[1:])
    if not torch.cuda.is_available():
        print("bench_gpu_throughput: skipped: no CUDA")
        print(f"reproduce (on a GPU machine): .venv/bin/python benchmarks/bench_gpu_throughput.py {flags}")
        return 0
    os.environ.setdefault("ADAPMTL_CACHE", str(Path(tempfile.gettempdir()) / "adapmtl-bench-cache"))
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    from trainers.data import DATASETS
    from trainers.models import build_model

    info = DATASETS["synthetic_scenes"]
    torch.manual_seed(0)
    init = build_model("resnet34", {t: info.task_channels[t] for t in TASKS}, width=1.0).state_dict()
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · bf16 supported "
          f"{torch.cuda.is_bf16_supported()} · {args.resolution}² batch {args.batch} · {args.workers} loader workers")
    rows = []
    for v in VARIANTS:
        if v.bf16 and not torch.cuda.is_bf16_supported():
            print(f"{v.name}: skipped (no bf16 on this GPU)")
            continue
        s = build(v, args, device, init)
        timed(s, args.warmup)
        seconds = timed(s, args.steps)
        ips = args.batch * args.steps / seconds
        busy = busy_fraction(s, args.profile_steps)
        syncs = sync_calls_per_step(s, 3)
        mem = torch.cuda.max_memory_allocated() / 2**30
        rows.append((v.name, ips, seconds / args.steps, busy, syncs, mem))
        del s
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = rows[0][1] if rows else float("nan")
    print(f"\n{'variant':10s} {'images/s':>9s} {'vs fp32':>8s} {'ms/step':>8s} {'GPU busy':>9s} {'syncs/step':>11s} "
          f"{'peak GiB':>9s}")
    for name, ips, sps, busy, syncs, mem in rows:
        print(f"{name:10s} {ips:9.1f} {ips / base:7.2f}× {sps * 1e3:8.1f} {busy:9.1%} {syncs:11.1f} {mem:9.1f}")
    if args.check_steps:
        metric_check(args, device, init)
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_gpu_throughput.py {flags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
