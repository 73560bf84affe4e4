"""Question 1 of the performance issue: per-step cost of each pruning method vs the dense step.

Every method trains its own copy of the *same* model (same seed, same initial weights) on the *same* batches,
through the real method classes (``setup`` via a :class:`~trainers.methods.MethodContext` built like the
engine's) and a step that mirrors the body of :func:`trainers.engine.train` line for line (forward, task
losses, ``task_weights``, weighted backward, ``before_optimizer_step``, Adam, StepLR, ``after_optimizer_step``,
on-device loss accumulation, and every ``log_every`` steps the one host read + ``sparsity_report`` +
``method.log_state``). Data loading is excluded: a few batches are prepared once and cycled, so the
comparison is of the step alone.

Timing is interleaved to cancel load drift on a shared machine: each round runs a block of ``--block`` steps
of dense, then of a method, then dense again, and so on (``D M1 D M2 D …``; the order of the methods
alternates between rounds). A method's ratio in a round is its block time over the mean of the two dense
blocks around it. On the CPU the time is the training thread's CPU time (``time.thread_time``, one intra-op
thread), so other processes time-slicing the shared cores do not inflate it; the wall-time median is printed
next to it. The table gives the median ratio over rounds, its interquartile spread, and the whole-run
ratio (sum of method time / sum of adjacent dense time: this one includes rare events such as IMP's prune
rounds, which a short window over-represents — see RESULTS.md).

On CUDA the same comparison runs on the full-size DeepLab-ResNet34 (width 1) at 321×321, batch 16 (``--full``),
timed with ``torch.cuda.Event``; without CUDA that part prints "skipped: no CUDA".

``--profile`` adds, per method, the torch.profiler operators whose self time grows most vs dense over the same
number of steps (the evidence of what an overhead is made of), and ``param evals/step``: how many times a
weight parametrization (soft threshold or mask) is evaluated per step vs the number of parametrized weights
(AdapMTL: 0 — its forward reads are served the staged Ŵ from torch's parametrization cache).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_step_overhead.py [--arch resnet34 mobilenetv2]
        [--methods adapmtl snip lth imp disparse] [--rounds 8 --block 4] [--profile] [--full]

One intra-op thread by default (``--threads``): on the 2-core shared machine that keeps each timed block on
one core and the measurement out of the way of the other engineers' tests.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = ("segment_semantic", "normal", "depth_zbuffer")  # the NYUv2 task set of the paper
#: Method parameters that keep setup short (LTH's dense phase) without changing the steady-state step.
SHORT_SETUP: dict[str, dict[str, Any]] = {"lth": {"dense_iterations": 2, "reuse_dense_checkpoint": False},
                                          "disparse": {"variant": "dynamic"}}
#: ``name[variant]`` → (registered method, extra params): AdapMTL once its mask is fixed (θ_init high enough
#: that the 90 % target is reached at the first step; from then on Ŵ = mask ⊙ W).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"adapmtl[mask-fixed]": ("adapmtl", {"theta_init": 0.0}),
                                                   "adapmtl[per-layer]": ("adapmtl", {}),
                                                   "adapmtl[stock-ops]": ("adapmtl", {})}


def _per_layer(model: nn.Module) -> None:
    """AdapMTL without the fused group nodes: every layer evaluates its own soft threshold (round 2's path)."""
    model.soft_thresholds.fused = False


def _stock_ops(model: nn.Module) -> None:
    """AdapMTL's fused group nodes with stock torch ops instead of the compiled CPU kernel (round 3's path)."""
    model.soft_thresholds.cpu_kernel = False


#: ``name[variant]`` → a change applied to the model after the method's setup (same maths, another code path).
AFTER_SETUP: dict[str, Callable[[nn.Module], None]] = {"adapmtl[per-layer]": _per_layer,
                                                       "adapmtl[stock-ops]": _stock_ops}


@dataclass
class Shape:
    """What is benchmarked: architecture, width, input resolution, batch."""

    arch: str
    width: float
    resolution: int
    batch: int
    head_channels: int | None = None

    def label(self) -> str:
        return f"{self.arch} w{self.width:g} {self.resolution}² b{self.batch}"


@dataclass
class Arm:
    """One method's live training state (its own model, optimizer, schedule and step counter)."""

    name: str
    method: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    task_losses: Callable[..., dict[str, torch.Tensor]]
    log_every: int
    device: torch.device
    step: int = 0
    times: list[float] = field(default_factory=list)
    loss_sums: torch.Tensor | None = None
    weight_sums: torch.Tensor | None = None
    nonfinite: torch.Tensor | None = None
    window: int = 0


def load_batches(shape: Shape, n: int, device: torch.device, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` real synthetic-scene training batches (rendered once, cached under $ADAPMTL_CACHE)."""
    from torch.utils.data import DataLoader

    from trainers.data import build_dataset
    from trainers.loader import to_device

    ds = build_dataset("synthetic_scenes", "train", tasks=list(TASKS), resolution=shape.resolution, augment=True,
                       seed=0, n_train=n * shape.batch, n_val=1, n_test=1)
    loader = DataLoader(ds, batch_size=shape.batch, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return [to_device(b, device) for b in itertools.islice(loader, n)]


def build_arm(name: str, shape: Shape, batches: list[dict[str, torch.Tensor]], device: torch.device,
              total_iterations: int, target: float, log_every: int, workdir: Path,
              channels_last: bool) -> Arm:
    """Model (seeded: every arm starts from the same weights) + method ``setup`` through a MethodContext."""
    from trainers.data import DATASETS
    from trainers.methods import MethodContext, build_method
    from trainers.models import build_model
    from trainers.tasks import get_task

    method_name, extra = VARIANTS.get(name, (name, {}))
    params = {**SHORT_SETUP.get(method_name, {}), **extra}
    info = DATASETS["synthetic_scenes"]
    torch.manual_seed(0)
    model = build_model(shape.arch, {t: info.task_channels[t] for t in TASKS}, width=shape.width,
                        head_channels=shape.head_channels).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    tasks = {t: get_task(t, "synthetic_scenes") for t in TASKS}

    def task_losses(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {t: task.loss(outputs[t].float(), batch) for t, task in tasks.items()}

    def make_optimizer(p: Any) -> torch.optim.Optimizer:  # the engine's optimizer (official Adam settings)
        return torch.optim.Adam(p, lr=1e-3, betas=(0.5, 0.999), weight_decay=1e-4, foreach=True)

    def make_scheduler(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.StepLR(opt, step_size=4000, gamma=0.5)

    stream = itertools.cycle(batches)

    def next_batch() -> dict[str, torch.Tensor]:
        return next(stream)

    def train_phase(iterations: int, before_step: Callable[[int], None] | None = None,
                    after_step: Callable[[int], None] | None = None) -> None:
        opt = make_optimizer(model.parameters())
        model.train()
        for i in range(iterations):
            b = next_batch()
            loss = sum(task_losses(model(b["image"]), b).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                before_step(i)
            opt.step()
            if after_step is not None:
                after_step(i)

    method = build_method(method_name, params)
    ctx = MethodContext(model=model, tasks=list(tasks), device=device,
                        target_sparsity=None if method_name == "dense" else target,
                        total_iterations=total_iterations, next_batch=next_batch, task_losses=task_losses,
                        make_optimizer=make_optimizer, make_scheduler=make_scheduler, train_phase=train_phase,
                        workdir=workdir / name, seed=0)
    (workdir / name).mkdir(parents=True, exist_ok=True)
    method.setup(ctx)
    if name in AFTER_SETUP:
        AFTER_SETUP[name](model)
    optimizer = make_optimizer(model.parameters())
    if hasattr(method, "bind_optimizer"):  # the engine hands the run's optimizer over after setup
        method.bind_optimizer(optimizer)
    arm = Arm(name, method, model, optimizer, make_scheduler(optimizer), task_losses, log_every, device)
    arm.loss_sums = torch.zeros(len(TASKS), device=device)
    arm.weight_sums = torch.zeros(len(TASKS), device=device)
    arm.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    model.train()
    return arm


def train_step(arm: Arm, batch: Mapping[str, torch.Tensor],
               phase: Callable[[str], Any] | None = None) -> None:
    """The body of ``trainers.engine.train``'s loop (fp32; logging every ``log_every`` steps).

    Each phase is a ``record_function`` range (``phase/...``) so that a profile attributes time to the
    forward, the backward, each method hook and the logging step (a no-op when no profiler is active).
    ``phase``: another context manager factory for those ranges (``bench_step_phases.py`` times them).
    """
    from torch.autograd.profiler import record_function

    if phase is not None:
        record_function = phase  # noqa: N806 - the same ranges, another observer
    from trainers.sparsity import sparsity_report

    step, method, model = arm.step, arm.method, arm.model
    with record_function("phase/forward+loss"):
        outputs = model(batch["image"])
        losses = arm.task_losses(outputs, batch)
    with record_function("phase/task_weights"):
        weights = method.task_weights(step, {t: v.detach() for t, v in losses.items()})
        total = sum(weights[t] * losses[t] for t in TASKS)
    with record_function("phase/backward"):
        arm.optimizer.zero_grad(set_to_none=True)
        total.backward()
    with record_function("phase/before_optimizer_step"):
        method.before_optimizer_step(step)
    with record_function("phase/optimizer+scheduler"):
        arm.optimizer.step()
        arm.scheduler.step()
    with record_function("phase/after_optimizer_step"):
        method.after_optimizer_step(step)
    with record_function("phase/accumulate"), torch.no_grad():
        stacked = torch.stack([losses[t].detach() for t in TASKS])
        arm.loss_sums += stacked
        arm.weight_sums += torch.stack([torch.as_tensor(weights[t], dtype=torch.float32, device=arm.device)
                                        for t in TASKS])
        arm.nonfinite |= ~(torch.isfinite(stacked).all() & torch.isfinite(total.detach()))
    arm.window += 1
    arm.step += 1
    if arm.step % arm.log_every == 0:
        with record_function("phase/log"):
            (arm.loss_sums / arm.window).tolist()
            bool(arm.nonfinite)
            (arm.weight_sums / arm.window).tolist()
            sparsity_report(model)
            method.log_state()
            arm.loss_sums.zero_()
            arm.weight_sums.zero_()
            arm.window = 0


class BlockTimer:
    """Time of a block of steps as ``(primary, wall)`` seconds.

    CUDA: ``torch.cuda.Event`` pairs around the block (primary = wall = GPU-timeline time). CPU: the primary
    figure is the CPU time of the training thread (``time.thread_time``; with one intra-op thread every
    kernel runs on it), which time-slicing by other processes on the shared machine does not inflate; the
    wall time is kept as the secondary figure.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], None]) -> tuple[float, float]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            t = start.elapsed_time(end) / 1000.0
            return t, t
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        return time.thread_time() - c0, time.perf_counter() - t0


def run_block(arm: Arm, batches: list[dict[str, torch.Tensor]], n: int) -> None:
    for _ in range(n):
        train_step(arm, batches[arm.step % len(batches)])


@dataclass
class Ratios:
    name: str
    per_round: list[float]
    whole: float
    method_s: float
    dense_s: float
    wall: float = float("nan")
    param_evals: float | None = None
    param_tensors: int = 0
    profile: list[tuple[str, float, int]] = field(default_factory=list)

    def quartiles(self) -> tuple[float, float, float]:
        if len(self.per_round) < 2:
            v = self.per_round[0] if self.per_round else float("nan")
            return v, v, v
        q = statistics.quantiles(self.per_round, n=4, method="inclusive")
        return q[0], statistics.median(self.per_round), q[2]


def measure(shape: Shape, methods: list[str], device: torch.device, *, rounds: int, block: int, warmup: int,
            target: float, log_every: int, workdir: Path, profile: bool, channels_last: bool,
            run_iterations: int, n_batches: int = 4) -> list[Ratios]:
    """Interleaved D M1 D M2 … rounds; returns each method's per-round ratios to the adjacent dense blocks."""
    batches = load_batches(shape, n_batches, device)
    total = max(run_iterations, warmup + rounds * block + 2 * max(block, 4) * (len(methods) + 1))
    arms = {name: build_arm(name, shape, batches, device, total, target, log_every, workdir, channels_last)
            for name in ["dense", *methods]}
    timer = BlockTimer(device)
    for arm in arms.values():  # warm-up: allocator, first-step lazy init, oneDNN primitive caches
        run_block(arm, batches, warmup)
        if device.type == "cuda":
            torch.cuda.synchronize()
    dense = arms["dense"]
    ratios: dict[str, list[float]] = {m: [] for m in methods}
    wall_ratios: dict[str, list[float]] = {m: [] for m in methods}
    sums = {m: [0.0, 0.0] for m in methods}
    for r in range(rounds):
        order = methods if r % 2 == 0 else list(reversed(methods))
        before = timer(lambda: run_block(dense, batches, block))
        for m in order:
            t = timer(lambda m=m: run_block(arms[m], batches, block))
            after = timer(lambda: run_block(dense, batches, block))
            ref = 0.5 * (before[0] + after[0])
            ratios[m].append(t[0] / ref)
            wall_ratios[m].append(t[1] / (0.5 * (before[1] + after[1])))
            sums[m][0] += t[0]
            sums[m][1] += ref
            before = after
    out = [Ratios(m, ratios[m], sums[m][0] / sums[m][1], sums[m][0] / (rounds * block),
                  sums[m][1] / (rounds * block), wall=statistics.median(wall_ratios[m])) for m in methods]
    for r in out:
        r.param_evals, r.param_tensors = count_param_evals(arms[r.name], batches)
    if profile:  # dense profiled between every method too (same drift cancelling as the timing)
        steps = max(block, 4)
        before = profile_ops(dense, batches, steps)
        for r in out:
            prof = profile_ops(arms[r.name], batches, steps)
            after = profile_ops(dense, batches, steps)
            r.profile = diff_profiles(prof, _mean_profile(before, after), steps)
            before = after
    return out


def count_param_evals(arm: Arm, batches: list[dict[str, torch.Tensor]], steps: int = 2) -> tuple[float, int]:
    """Parametrization evaluations per step (forward hooks on every parametrization module) and their count."""
    from torch.nn.utils import parametrize

    mods = [pl[0] for m in arm.model.modules() if parametrize.is_parametrized(m)
            for pl in m.parametrizations.values()]  # type: ignore[union-attr]
    calls = [0]

    def hook(*_: Any) -> None:
        calls[0] += 1

    handles = [m.register_forward_hook(hook) for m in mods]
    try:
        run_block(arm, batches, steps)
    finally:
        for h in handles:
            h.remove()
    return calls[0] / steps, len(mods)


Profile = dict[str, tuple[float, int]]


def profile_ops(arm: Arm, batches: list[dict[str, torch.Tensor]], steps: int) -> tuple[Profile, Profile]:
    """Over ``steps`` steps (torch.profiler): per operator (self time s, calls) and per phase (total time s)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = arm.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        run_block(arm, batches, steps)
    ops: Profile = {}
    phases: Profile = {}
    for ev in prof.key_averages():
        if ev.key.startswith("phase/"):
            t = (getattr(ev, "device_time_total", 0) if cuda else ev.cpu_time_total) / 1e6
            phases[ev.key[len("phase/"):]] = (t, ev.count)
        else:
            dev_us = getattr(ev, "self_device_time_total", 0) if cuda else 0
            ops[ev.key] = ((ev.self_cpu_time_total + dev_us) / 1e6, ev.count)
    return ops, phases


def _mean_profile(a: tuple[Profile, Profile], b: tuple[Profile, Profile]) -> tuple[Profile, Profile]:
    def mean(x: Profile, y: Profile) -> Profile:
        return {k: (0.5 * (x.get(k, (0.0, 0))[0] + y.get(k, (0.0, 0))[0]),
                    round(0.5 * (x.get(k, (0.0, 0))[1] + y.get(k, (0.0, 0))[1]))) for k in {*x, *y}}

    return mean(a[0], b[0]), mean(a[1], b[1])


def diff_profiles(method: tuple[Profile, Profile], dense: tuple[Profile, Profile], steps: int,
                  top: int = 6) -> list[tuple[str, float, int]]:
    """Extra ms/step vs dense: every phase, then the operators the method *adds* calls of (largest first)."""
    rows: list[tuple[str, float, int]] = []
    (m_ops, m_ph), (d_ops, d_ph) = method, dense
    for key in dict.fromkeys([*d_ph, *m_ph]):
        t, n = m_ph.get(key, (0.0, 0))
        t0, _ = d_ph.get(key, (0.0, 0))
        rows.append((f"phase {key}", (t - t0) / steps * 1e3, 0))
    extra = []
    for key, (t, n) in m_ops.items():
        t0, n0 = d_ops.get(key, (0.0, 0))
        if n != n0:
            extra.append((f"op {key}", (t - t0) / steps * 1e3, round((n - n0) / steps)))
    extra.sort(key=lambda r: -r[1])
    return rows + extra[:top]


def print_table(shape: Shape, device: torch.device, results: list[Ratios], target_ratio: float) -> None:
    what = "GPU time (CUDA events)" if device.type == "cuda" else "CPU time of the training thread"
    print(f"\n{shape.label()} on {device.type} ({torch.get_num_threads()} thread(s)); ratios of {what}; dense "
          f"{statistics.median([r.dense_s for r in results]) * 1e3:.1f} ms/step")
    print(f"{'method':22s} {'median':>7s} {'IQR':>15s} {'whole-run':>9s} {'wall med':>8s} {'ms/step':>8s} "
          f"{'param evals/step':>17s}  target ≤{target_ratio:.2f}×")
    for r in results:
        q1, med, q3 = r.quartiles()
        evals = f"{r.param_evals:.0f} / {r.param_tensors}" if r.param_tensors else "-"
        met = "met" if med <= target_ratio else "missed"
        print(f"{r.name:22s} {med:7.3f} {f'[{q1:.3f}, {q3:.3f}]':>15s} {r.whole:9.3f} {r.wall:8.3f} "
              f"{r.method_s * 1e3:8.1f} {evals:>17s}  {met}")
    for r in results:
        if r.profile:
            print(f"  {r.name}: extra time vs dense (torch.profiler; ms/step per phase, then the ops it adds)")
            for key, ms, calls in r.profile:
                print(f"    {key:52s} {ms:+8.2f} ms {f'{calls:+d} calls' if calls else '':>11s}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["resnet34", "mobilenetv2"])
    parser.add_argument("--methods", nargs="+", default=["adapmtl", "adapmtl[mask-fixed]", "snip", "lth", "imp",
                                                         "disparse"])
    parser.add_argument("--width", type=float, default=0.125, help="CPU-sized model width (the quickstart's)")
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=4, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=25, help="logging interval (examples/quickstart.yaml)")
    parser.add_argument("--run-iterations", type=int, default=300,
                        help="run length the methods schedule for (IMP rounds, DiSparse/AdapMTL phases); the "
                             "timed window is its beginning (300 = examples/quickstart.yaml)")
    parser.add_argument("--target", type=float, default=0.9, help="target sparsity of the pruning methods")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="per-method torch.profiler diff vs dense")
    parser.add_argument("--full", action="store_true",
                        help="also the full-size DeepLab-ResNet34 at 321×321, batch 16 (CUDA only)")
    parser.add_argument("--cpu", action="store_true", help="force the CPU-sized runs onto the CPU")
    parser.add_argument("--only-full", action="store_true", help="skip the CPU-sized runs (with --full)")
    parser.add_argument("--target-ratio", type=float, default=1.10)
    args = parser.parse_args(argv)

    import tempfile

    os.environ.setdefault("ADAPMTL_CACHE", str(Path(tempfile.gettempdir()) / "adapmtl-bench-cache"))
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    small_device = torch.device("cuda") if cuda and not args.cpu else torch.device("cpu")
    if small_device.type == "cpu":  # as trainers.engine.train does for a CPU run
        from trainers.host_memory import retain_freed_memory

        print(f"malloc keeps freed memory (trainers.host_memory): {retain_freed_memory()}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for arch in [] if args.only_full else args.arch:
            shape = Shape(arch, args.width, args.resolution, args.batch)
            res = measure(shape, args.methods, small_device, rounds=args.rounds, block=args.block,
                          warmup=args.warmup, target=args.target, log_every=args.log_every, workdir=Path(tmp),
                          profile=args.profile, channels_last=small_device.type == "cuda",
                          run_iterations=args.run_iterations)
            print_table(shape, small_device, res, args.target_ratio)
        if args.full:
            if not cuda:
                print("\nfull-size DeepLab-ResNet34 321×321 b16: skipped: no CUDA")
            else:
                shape = Shape("resnet34", 1.0, 321, 16)
                res = measure(shape, args.methods, torch.device("cuda"), rounds=args.rounds, block=args.block,
                              warmup=max(args.warmup, 5), target=args.target, log_every=args.log_every,
                              workdir=Path(tmp), profile=args.profile, channels_last=True,
                              run_iterations=20000, n_batches=2)
                print_table(shape, torch.device("cuda"), res, args.target_ratio)
    print(f"\n({time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.2f})")
    flags = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    print(f"reproduce: OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/bench_step_overhead.py {flags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
