"""A 2-worker DDP trial of the engine on one GPU: the multi-worker path without Ray (benchmarks/gpu_check.sh).

Why without Ray: the GPU machine has no Ray (its wheel is larger than what travels to it), and what the
Ray Train path adds around the engine — one process per worker with ``torch.distributed`` initialised — is
what this reproduces with ``torch.multiprocessing``. Why gloo: NCCL refuses two ranks on one device
("Duplicate GPU detected"); gloo all-reduces CUDA tensors too, so both workers train on ``cuda:0``.

Each rank runs ``trainers.engine.train`` on the same RunConfig (synthetic scenes, the quickstart-sized
ResNet34, a pruning method so that masks and the target are exercised) with its half of every global
batch (``BatchStream`` rank/world_size). Passes when both ranks finish, their final weights are identical
(DDP kept them in sync: a max-abs difference of 0), the loss is finite and the achieved sparsity is the
target. Prints one line: ``ddp: ok ...`` or ``ddp: FAILED ...``.

    .venv/bin/python benchmarks/ddp_one_gpu.py [--method snip --steps 30] [--device cpu] [--dry-run]

``--dry-run`` (any machine): imports and builds the RunConfig, then exits without starting processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def make_config(method: str, steps: int, target: float) -> Any:
    from trainers.config import RunConfig

    return RunConfig(
        data={"name": "synthetic_scenes", "resolution": 48,
              "tasks": ["segment_semantic", "normal", "depth_zbuffer"],
              "options": {"n_train": 64, "n_val": 16, "n_test": 16}},
        model={"arch": "resnet34", "width": 0.125},
        train={"iterations": steps, "batch_size": 8, "log_every": max(1, steps // 3), "val_every": steps,
               "checkpoint_every": steps, "lr_decay_every": 1000},
        method=method, target_sparsity=None if method == "dense" else target,
    )


def worker(rank: int, world: int, port: int, method: str, steps: int, target: float, workdir: str,
           results: Any, device_name: str = "cuda") -> None:
    import hashlib

    import torch
    import torch.distributed as dist

    import trainers.engine as engine

    built: list[torch.nn.Module] = []
    make_model = engine.build_model

    def build_model(*a: Any, **k: Any) -> torch.nn.Module:  # keep a handle on this rank's model
        model = make_model(*a, **k)
        built.append(model)
        return model

    engine.build_model = build_model
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        device = torch.device("cuda", 0) if device_name == "cuda" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(0)
        else:
            torch.set_num_threads(1)
        result = engine.train(make_config(method, steps, target), None, workdir=Path(workdir) / "run",
                              device=device)
        digest = hashlib.sha256()
        for key, value in built[-1].state_dict().items():  # stored weights, masks/thresholds, BN statistics
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        mine = {"rank": rank, "steps": result.steps, "sparsity": (result.sparsity or {}).get("overall", -1.0),
                "s_per_step": result.seconds_per_step, "digest": digest.hexdigest()}
        every: list[Any] = [None] * world
        dist.all_gather_object(every, mine)
        if rank == 0:
            results.put(every)
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="snip")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: the same two gloo workers on the CPU (a smoke test of this script's logic)")
    args = ap.parse_args(argv)
    cfg = make_config(args.method, args.steps, args.target)
    if args.dry_run:
        import torch.distributed  # noqa: F401
        import torch.multiprocessing  # noqa: F401

        import trainers.engine  # noqa: F401

        print(f"ddp: dry run ok (config {cfg.run_key()[:8]}, method {args.method}; gloo available: "
              f"{torch.distributed.is_gloo_available()})")
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("ddp: skipped: no CUDA")
        return 0
    import torch.multiprocessing as mp

    from orchestrator.cluster import free_port

    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(worker, args=(2, free_port(), args.method, args.steps, args.target, tmp, results,
                                         args.device), nprocs=2, join=True, start_method="spawn")
        every = results.get()
    steps_ok = all(r["steps"] == args.steps for r in every)
    same = len({r["digest"] for r in every}) == 1
    sparsity = [r["sparsity"] for r in every]
    target_ok = args.method == "dense" or all(abs(s - args.target) < 0.02 for s in sparsity)
    ok = steps_ok and same and target_ok
    where = "one GPU" if args.device == "cuda" else "the CPU"
    print(f"ddp: {'ok' if ok else 'FAILED'}: 2 workers (gloo) on {where}, {args.method}, {args.steps} steps; "
          f"sparsity per rank {', '.join(f'{s:.3f}' for s in sparsity)} (target {args.target}); "
          f"replicas {'identical' if same else 'DIFFER'} (sha256 of every state-dict tensor); "
          f"s/step {every[0]['s_per_step']:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
