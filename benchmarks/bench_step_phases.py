"""Where a method's extra step time goes, phase by phase, against the dense step (Q1 evidence).

Why: ``bench_step_overhead.py`` gives one ratio per method and its ``--profile`` attributes time through
torch.profiler, which inflates every small op (it roughly doubles the cost of a 1 µs view). This script uses
no profiler: the dense arm and the method's arm (the same ``build_arm`` as ``bench_step_overhead.py``: same
model, same seed, same batches) take alternate steps, each phase of the engine's step timed with
``time.thread_time`` (one intra-op thread) through ``bso.train_step``'s own phase ranges, and it prints the median per phase and the difference. It then
times, for AdapMTL, the parts it can isolate: staging every group's Ŵ (``ThresholdBank.stage``) and the 88/72
parametrization reads of ``module.weight`` inside a forward. What is left of the forward's and the
backward's difference after those is the cost of the extra weight-sized arrays the method touches (Ŵ, its
gradient, ``sign(Ŵ)``) in the memory hierarchy, which no per-op timing shows.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_step_phases.py [--arch mobilenetv2] [--method adapmtl]
        [--steps 40]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_step_overhead as bso  # noqa: E402


class PhaseClock:
    """A ``phase`` factory for ``bso.train_step``: the CPU time of each named range, appended per step."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.recording = False

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        c = time.thread_time()
        try:
            yield
        finally:
            if self.recording:
                self.times[name.removeprefix("phase/")].append(time.thread_time() - c)


def median_ms(fn: Callable[[], object], n: int = 100, rounds: int = 7) -> float:
    times = []
    for _ in range(rounds):
        c = time.thread_time()
        for _ in range(n):
            fn()
        times.append((time.thread_time() - c) / n * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenetv2")
    parser.add_argument("--method", default="adapmtl")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    os.environ.setdefault("ADAPMTL_CACHE", str(Path(tempfile.gettempdir()) / "adapmtl-bench-cache"))
    shape = bso.Shape(args.arch, args.width, args.resolution, args.batch)
    device = torch.device("cpu")
    from trainers.host_memory import retain_freed_memory

    retain_freed_memory()  # as trainers.engine.train does for a CPU run
    batches = bso.load_batches(shape, 3, device)
    workdir = Path(tempfile.mkdtemp(prefix="bench-phases-"))
    arms = {name: bso.build_arm(name, shape, batches, device, 300, 0.9, 50, workdir, False)
            for name in ("dense", args.method)}
    clocks = {name: PhaseClock() for name in arms}
    for i in range(args.warmup + args.steps):
        for name, arm in arms.items():
            clocks[name].recording = i >= args.warmup
            bso.train_step(arm, batches[i % len(batches)], phase=clocks[name])
    print(f"\n{shape.label()} on cpu ({torch.get_num_threads()} thread(s)); median CPU ms per step over "
          f"{args.steps} alternating steps (log: median over the logging steps only)")
    print(f"{'phase':24s} {'dense':>8s} {args.method:>10s} {'extra':>8s}")
    totals = [0.0, 0.0]
    for phase in clocks["dense"].times:
        d, m = (statistics.median(clocks[n].times[phase]) * 1e3 for n in ("dense", args.method))
        if phase != "log":  # every log_every-th step only: not part of the per-step sum
            totals[0] += d
            totals[1] += m
        print(f"{phase:24s} {d:8.2f} {m:10.2f} {m - d:+8.2f}")
    print(f"{'sum (without log)':24s} {totals[0]:8.2f} {totals[1]:10.2f} {totals[1] - totals[0]:+8.2f}  "
          f"({totals[1] / totals[0]:.3f}×)")
    bank = getattr(arms[args.method].model, "soft_thresholds", None)
    if bank is not None:
        modules = [mod for mods in arms[args.method].method.layers.values() for _, mod in mods]
        stage_ms = median_ms(bank.stage)
        bank._pre_forward(arms[args.method].model, ())  # as in the forward: staged, served from the cache
        try:
            reads_ms = median_ms(lambda: [m.weight for m in modules])
        finally:
            bank._post_forward(arms[args.method].model, (), None)
        print(f"  of the forward's extra: staging every group's Ŵ {stage_ms:.2f} ms; "
              f"{len(modules)} reads of module.weight {reads_ms:.2f} ms")
    print(f"\nreproduce: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} .venv/bin/python "
          f"benchmarks/bench_step_phases.py --arch {args.arch} --method {args.method} --steps {args.steps}")


if __name__ == "__main__":
    main()
