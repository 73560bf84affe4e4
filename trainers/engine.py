"""The multitask training loop. One loop for every method; methods plug in through hooks (DESIGN §3.3).

The loop is a plain function of (config, reporter, workdir): no globals, device and rank come from the
caller or the torch.distributed context, so it runs unchanged in a unit test, in a Tune trainable and in a
Ray Train worker. Per step it does no device→host synchronisation; losses, non-finite flags and sparsity are
accumulated on the device and read once per logging interval.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from results import schema as keys
from trainers import checkpoint as ckpt
from trainers import denormals
from trainers.compute import ComputeLedger
from trainers.config import RunConfig
from trainers.data import DATASETS, build_dataset
from trainers.host_memory import retain_freed_memory
from trainers.loader import BatchStream, eval_loader, to_device
from trainers.methods import MethodContext, PruningMethod, build_method
from trainers.models import build_model
from trainers.paths import RunPaths
from trainers.reporting import FanOutReporter, MemoryReporter, NullReporter, Reporter
from trainers.sparsity import flops, param_counts, sparsity_report
from trainers.tasks import Task, get_task


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf: the run stops, and the reason is recorded with the run."""


@dataclass
class RunResult:
    run_key: str
    steps: int
    completed: bool
    val: dict[str, dict[str, float]] = field(default_factory=dict)
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    val_delta_t: dict[str, float] | None = None
    test_delta_t: dict[str, float] | None = None
    sparsity: dict[str, float] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    flops: dict[str, int] = field(default_factory=dict)
    seconds_per_step: float = float("nan")
    method_state: dict[str, float] = field(default_factory=dict)
    compute: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _Setup:
    model: nn.Module
    tasks: dict[str, Task]
    train_set: Any
    val_set: Any
    test_set: Any
    input_shape: tuple[int, ...]


def build_run(config: RunConfig, device: torch.device) -> _Setup:
    """Datasets, tasks and the model of a run (deterministic in ``config.seed``)."""
    info = DATASETS[config.data.name]
    task_names = config.data.task_list()
    conventions = config.conventions()
    options = dict(config.data.options)
    if conventions.normals in ("official_raw", "decoded"):  # the encoding is a convention (NYUv2)
        options["normals"] = conventions.normals
    common = dict(tasks=task_names, root=config.data.root, resolution=config.data.resolution,
                  seed=config.data.seed, **options)
    train_set = build_dataset(config.data.name, "train", augment=True, **common)
    val_set = build_dataset(config.data.name, "val", augment=False, **common)
    test_set = build_dataset(config.data.name, "test", augment=False, **common)
    tasks = {t: get_task(t, config.data.name, **conventions.task_options(), **_task_options(train_set, t))
             for t in task_names}
    torch.manual_seed(config.seed)  # the model's initialization depends on the seed alone
    channels = getattr(train_set, "task_channels", info.task_channels)  # a dataset option may change them
    model = build_model(config.model.arch, {t: channels[t] for t in task_names},
                        width=config.model.width, head_channels=config.model.head_channels,
                        dropout=config.model.dropout).to(device)
    sample = val_set[0]["image"]
    return _Setup(model, tasks, train_set, val_set, test_set, (1, *sample.shape))


def _task_options(dataset: Any, task: str) -> dict[str, Any]:
    """Dataset-provided loss options (Taskonomy's segmentation class weights)."""
    weights = getattr(dataset, "class_weights", None)
    if task == "segment_semantic" and weights is not None:
        return {"class_weights": torch.as_tensor(weights, dtype=torch.float32)}
    return {}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, tasks: Mapping[str, Task], device: torch.device,
             max_batches: int | None = None, autocast: Callable[[], Any] | None = None) -> dict[str, dict[str, float]]:
    """Metrics of every task over a split (model in eval mode; one host sync per task at the end)."""
    was_training = model.training
    model.eval()
    meters = {t: task.new_meter() for t, task in tasks.items()}
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = to_device(batch, device)
        with autocast() if autocast else _nullcontext():
            out = model(batch["image"])
        for t, meter in meters.items():
            meter.update(out[t].float(), batch)
    model.train(was_training)
    return {t: m.compute() for t, m in meters.items()}


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _flatten(split: str, metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    name = keys.val_metric if split == "val" else keys.test_metric
    return {name(t, m): v for t, ms in metrics.items() for m, v in ms.items()}


def _delta_t_metrics(split: str, dt: Mapping[str, float]) -> dict[str, float]:
    name = keys.val_delta_t if split == "val" else keys.test_delta_t
    out = {name(t): v for t, v in dt.items() if t != "overall"}
    out[name()] = dt["overall"]
    return out


def _delta_t(metrics: dict, reference: dict | None, tasks: Mapping[str, Task]) -> dict[str, float] | None:
    if not reference:
        return None
    from results.scores import delta_t

    directions = {t: dict(task.metric_directions) for t, task in tasks.items()}
    # ΔT is over the task's own metrics only (not auxiliary ones such as ``miou_standard``)
    scored = {t: {m: v for m, v in metrics[t].items() if m in directions[t]} for t in metrics}
    return delta_t(scored, reference, directions)


def train(config: RunConfig, reporter: Reporter | None = None, *, workdir: Path | str,
          reference: Mapping[str, Any] | None = None, resume: bool = True, device: torch.device | None = None,
          stop_at: int | None = None, on_validation: Callable[[int, dict[str, float]], None] | None = None,
          dense_checkpoint: Path | None = None) -> RunResult:
    """Train one run to the end (or to ``stop_at``), evaluate on test, and report everything.

    ``reference``: the dense reference's metrics ``{"val": {task: {metric: v}}, "test": {...}}``; when given,
    validation and test ΔT are computed (DESIGN §3.5). ``on_validation(step, metrics)`` receives the flat
    validation metrics (the orchestrator forwards them to Tune). ``stop_at`` ends the call early after a
    checkpoint, as a pre-empted trial would (tests use it to prove resume equals uninterrupted).
    """
    device = device or default_device()
    if device.type == "cpu":
        retain_freed_memory()  # no page faults for the step's recurring tensors (trainers.host_memory)
    # no slow path for the denormal weights of the ASPP heads' dilated taps (trainers.denormals)
    with denormals.flush_denormals(device) as flushed:
        return _train(config, reporter, workdir=workdir, reference=reference, resume=resume, device=device,
                      stop_at=stop_at, on_validation=on_validation, dense_checkpoint=dense_checkpoint,
                      flushed=flushed)


def _train(config: RunConfig, reporter: Reporter | None, *, workdir: Path | str,
           reference: Mapping[str, Any] | None, resume: bool, device: torch.device, stop_at: int | None,
           on_validation: Callable[[int, dict[str, float]], None] | None, dense_checkpoint: Path | None,
           flushed: bool) -> RunResult:
    """:func:`train` on a resolved device, inside its thread settings."""
    rank, world = _dist_rank_world()
    paths = RunPaths(Path(workdir)).ensure()
    history = MemoryReporter()
    out: Reporter = FanOutReporter(reporter if rank == 0 and reporter is not None else NullReporter(), history)
    tc = config.train
    seed_everything(config.seed)

    run = build_run(config, device)
    model, tasks = run.model, run.tasks
    if config.train.channels_last or (config.train.channels_last is None and device.type == "cuda"):
        model = model.to(memory_format=torch.channels_last)
    use_bf16 = config.train.precision == "bf16"

    def autocast() -> Any:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if use_bf16 else _nullcontext()

    def task_losses(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {t: task.loss(outputs[t].float(), batch) for t, task in tasks.items()}

    def make_optimizer(params: Any) -> torch.optim.Optimizer:
        # Adam as the official code: betas (0.5, 0.999), coupled L2 weight decay on every parameter.
        # foreach=True: the same element-wise ops in the same order as the per-parameter loop torch picks by
        # default on the CPU (bit for bit, tests/test_engine_speedups.py), one C++ loop instead of ~10 Python
        # calls per parameter (~4 ms/step on the benchmark's 180-parameter model); CUDA's default already is it.
        return torch.optim.Adam(params, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay,
                                foreach=True)

    def make_scheduler(optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=tc.lr_decay_every, gamma=tc.lr_decay)

    state = ckpt.load(paths.checkpoint) if resume and paths.checkpoint.exists() else None
    if state is not None and state.get("run_key") != config.run_key():
        raise RuntimeError(f"checkpoint {paths.checkpoint} belongs to another run ({state.get('run_key')})")

    # The setup stream: methods that look at data before training (SNIP, DiSparse) draw from it.
    setup_stream = BatchStream(run.train_set, batch_size=tc.batch_size, seed=config.seed + 7_777, device=device,
                               rank=rank, world_size=world)
    def train_phase(iterations: int, before_step: Callable[[int], None] | None = None,
                    after_step: Callable[[int], None] | None = None) -> None:
        """A plain training phase inside ``setup`` (equal task weights, the run's optimizer settings)."""
        opt = make_optimizer(model.parameters())
        sched = make_scheduler(opt)
        model.train()
        compute.add_steps(iterations, setup=True)
        for i in range(iterations):
            batch = setup_stream()
            with autocast():
                outputs = model(batch["image"])
            loss = sum(task_losses(outputs, batch).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                before_step(i)
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(i)

    method: PruningMethod = build_method(config.method, config.method_params)
    compute = ComputeLedger(batch_size=tc.batch_size, world_size=world)
    ctx = MethodContext(
        model=model, tasks=list(tasks), device=device, target_sparsity=config.target_sparsity,
        total_iterations=tc.iterations, next_batch=setup_stream, task_losses=task_losses,
        make_optimizer=make_optimizer, make_scheduler=make_scheduler, train_phase=train_phase, workdir=paths.root, seed=config.seed,
        dense_checkpoint=dense_checkpoint, dataset=config.data.name, compute=compute,
    )
    if state is not None:
        ctx.extras["resuming"] = True
    method.setup(ctx)

    optimizer = make_optimizer(model.parameters())
    scheduler = make_scheduler(optimizer)
    method.bind_optimizer(optimizer)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        method.load_state_dict(state["method"])
        ckpt.set_rng_state(state["rng"])
        compute.load_state_dict(state.get("compute", {}))
        start = int(state["step"])
    else:
        out.log_params(config.flat())
        out.set_tags({keys.TAG_TASKS: ",".join(tasks), keys.TAG_DIRECTIONS: keys.directions_to_tag(
            {t: dict(task.metric_directions) for t, task in tasks.items()}),
            keys.TAG_CONVENTIONS: config.conventions().tag()})
        out.log_json(config.resolved(), "config.json")
    out.set_tags({denormals.TAG: str(flushed).lower()})  # on every (re)start: the arithmetic now in force

    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    stream = BatchStream(run.train_set, batch_size=tc.batch_size, seed=config.seed, device=device,
                         num_workers=tc.num_workers, start_batch=start, rank=rank, world_size=world)
    eval_bs = tc.eval_batch_size or tc.batch_size
    val_loader = eval_loader(run.val_set, eval_bs)
    ref_val = (reference or {}).get("val")
    ref_test = (reference or {}).get("test")

    loss_sums = torch.zeros(len(tasks), device=device)
    weight_sums = torch.zeros(len(tasks), device=device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    window_steps = 0
    t_window = time.perf_counter()
    step_times: list[float] = []
    last_val: dict[str, dict[str, float]] = {}
    last_val_dt: dict[str, float] | None = None
    end = min(tc.iterations, stop_at) if stop_at is not None else tc.iterations
    step = start
    model.train()

    try:
        for step in range(start, end):
            batch = stream()
            method.before_forward(step, batch)
            with autocast():
                outputs = train_model(batch["image"])
            losses = task_losses(outputs, batch)
            weights = method.task_weights(step, {t: v.detach() for t, v in losses.items()})
            total = sum(weights[t] * losses[t] for t in tasks)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            method.before_optimizer_step(step)
            optimizer.step()
            scheduler.step()
            method.after_optimizer_step(step)
            compute.add_steps()

            with torch.no_grad():
                stacked = torch.stack([losses[t].detach() for t in tasks])
                loss_sums += stacked
                weight_sums += torch.stack([torch.as_tensor(weights[t], dtype=torch.float32, device=device)
                                            for t in tasks])
                nonfinite |= ~(torch.isfinite(stacked).all() & torch.isfinite(total.detach()))
            window_steps += 1
            done = step + 1

            if done % tc.log_every == 0 or done == end:
                means = (loss_sums / window_steps).tolist()  # the one sync of the interval
                if bool(nonfinite):
                    bad = [t for t, v in zip(tasks, means, strict=True) if not math.isfinite(v)]
                    raise NonFiniteLossError(
                        f"non-finite loss ({', '.join(bad) or 'total'}) within steps {done - window_steps + 1}-{done}"
                    )
                elapsed = time.perf_counter() - t_window
                step_times.append(elapsed / window_steps)
                metrics = {keys.train_loss(t): v for t, v in zip(tasks, means, strict=True)}
                metrics.update({keys.train_weight(t): v for t, v in
                                zip(tasks, (weight_sums / window_steps).tolist(), strict=True)})
                metrics.update({keys.sparsity(k): v for k, v in sparsity_report(model).items()})
                metrics.update(method.log_state())
                metrics["train/lr"] = scheduler.get_last_lr()[0]
                metrics["perf/seconds_per_step"] = elapsed / window_steps
                out.log_metrics(metrics, done)
                loss_sums.zero_()
                weight_sums.zero_()
                window_steps = 0
                t_window = time.perf_counter()

            if done % tc.val_every == 0 or done == tc.iterations:
                last_val = evaluate(model, val_loader, tasks, device, tc.max_eval_batches, autocast)
                flat = _flatten("val", last_val)
                last_val_dt = _delta_t(last_val, ref_val, tasks)
                if last_val_dt is not None:
                    flat.update(_delta_t_metrics("val", last_val_dt))
                flat.update({keys.sparsity(k): v for k, v in sparsity_report(model).items()})
                out.log_metrics(flat, done)
                if on_validation is not None:
                    on_validation(done, flat)
                t_window = time.perf_counter()

            if done % tc.checkpoint_every == 0 or done == end:
                if rank == 0:
                    ckpt.save_atomic({
                        "run_key": config.run_key(), "step": done, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "method": method.state_dict(), "rng": ckpt.rng_state(), "compute": compute.state_dict(),
                    }, paths.checkpoint)
                t_window = time.perf_counter()
    except NonFiniteLossError as exc:
        out.end("FAILED", str(exc))
        raise
    except (KeyboardInterrupt, SystemExit) as exc:
        out.end("KILLED", f"interrupted at step {step} ({type(exc).__name__}); resumable from the last checkpoint")
        raise
    except BaseException as exc:
        out.end("FAILED", f"{type(exc).__name__}: {exc}")
        raise

    completed = end >= tc.iterations
    result = RunResult(run_key=config.run_key(), steps=end, completed=completed, val=last_val,
                       val_delta_t=last_val_dt,
                       seconds_per_step=float(sum(step_times) / len(step_times)) if step_times else float("nan"))
    if not completed:
        return result

    test = evaluate(model, eval_loader(run.test_set, eval_bs), tasks, device, tc.max_eval_batches, autocast)
    result.test = test
    result.test_delta_t = _delta_t(test, ref_test, tasks)
    result.sparsity = sparsity_report(model)
    result.params = param_counts(model)
    dense_flops, sparse_flops = flops(model, run.input_shape)
    result.flops = {"dense": dense_flops, "sparse": sparse_flops}
    result.method_state = method.extra_artifacts()
    final = _flatten("test", test)
    if result.test_delta_t is not None:
        final.update(_delta_t_metrics("test", result.test_delta_t))
    final.update({keys.final_sparsity(k): v for k, v in result.sparsity.items()})
    final[keys.FINAL_PARAMS_TOTAL] = result.params["total"]
    final[keys.FINAL_PARAMS_NONZERO] = result.params["nonzero"]
    final[keys.FINAL_FLOPS_DENSE] = dense_flops
    final[keys.FINAL_FLOPS_SPARSE] = sparse_flops
    if config.target_sparsity is not None:
        final["final/target_sparsity"] = config.target_sparsity
    final["final/seconds_per_step"] = result.seconds_per_step
    result.compute = compute.metrics()
    final.update(result.compute)
    out.log_metrics(final, end)

    if rank == 0:
        ckpt.save_atomic({"run_key": config.run_key(), "config": config.resolved(), "model": model.state_dict(),
                          "method": method.state_dict(), "sparsity": result.sparsity}, paths.final)
        _write_history(history, paths.history)
        paths.summary.write_text(json.dumps(result.as_dict(), indent=2, default=float))
        out.log_artifact(paths.final, "checkpoint")
        out.log_artifact(paths.history)
        out.log_artifact(paths.summary)
        out.log_json(result.method_state, "method_state.json")
    out.end("FINISHED")
    return result


def _write_history(history: MemoryReporter, path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "step", "value"])
        for key, series in history.metrics.items():
            for step, value in series:
                writer.writerow([key, step, value])
