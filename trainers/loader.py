"""Deterministic, resumable batch streams.

The data order and every augmentation draw are functions of (seed, epoch, index) alone, not of the global
RNG or of how many loader workers run. A run resumed at step k therefore sees exactly the batches an
uninterrupted run would, which is what the resume test checks; and methods that take batches in
``setup`` (SNIP, DiSparse) shift the stream identically in every run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729) % (2**63 - 1)


class SeededSamples(Dataset):
    """Decodes ``epoch * n + index`` keys and runs the wrapped dataset under a per-sample seeded RNG."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.n = len(dataset)  # type: ignore[arg-type]
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int):
        epoch, index = divmod(int(key), self.n)
        with torch.random.fork_rng(devices=[]):
            # Only the CPU generator, the one the host-side pipeline draws from (and the only one fork_rng
            # restores). ``torch.manual_seed`` would also queue a CUDA/XPU/MPS re-seed, which records a
            # Python stack trace each time (~0.1-0.9 ms per sample on the 2-core machine, most of the data
            # time of a synthetic-scenes step) and, on a CUDA run, re-seeded the GPU generator with every
            # batch's last sample as a side effect.
            torch.random.default_generator.manual_seed(_sample_seed(self.seed, epoch, index))
            return self.dataset[index]


class EpochSampler(Sampler[int]):
    """Infinite stream of keys: one seeded permutation per epoch, full global batches only.

    With ``world_size`` > 1 each rank takes its slice of every global batch (Ray Train / DDP workers).
    ``start_batch`` skips the batches an interrupted run already consumed, without loading them.
    """

    def __init__(self, n: int, batch_size: int, seed: int, *, start_batch: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world_size} workers")
        if n < batch_size:
            raise ValueError(f"the training split has {n} samples, fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size
        self.batches_per_epoch = n // batch_size

    def __iter__(self) -> Iterator[int]:
        per_rank = self.batch_size // self.world_size
        epoch, batch = divmod(self.start_batch, self.batches_per_epoch)
        while True:
            gen = torch.Generator().manual_seed(self.seed * 31 + epoch)
            perm = torch.randperm(self.n, generator=gen).tolist()
            for b in range(batch, self.batches_per_epoch):
                lo = b * self.batch_size + self.rank * per_rank
                for i in perm[lo : lo + per_rank]:
                    yield epoch * self.n + i
            epoch, batch = epoch + 1, 0


class BatchStream:
    """``next()`` gives the next training batch on the device; ``consumed`` is what a checkpoint stores."""

    def __init__(self, dataset: Dataset, *, batch_size: int, seed: int, device: torch.device,
                 num_workers: int = 0, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.device = device
        self.consumed = start_batch
        sampler = EpochSampler(len(dataset), batch_size, seed, start_batch=start_batch, rank=rank,  # type: ignore[arg-type]
                               world_size=world_size)
        self.loader = DataLoader(
            SeededSamples(dataset, seed),
            batch_size=batch_size // world_size,
            sampler=sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(seed),
        )
        self._it = iter(self.loader)

    def __call__(self) -> dict[str, torch.Tensor]:
        batch = next(self._it)
        self.consumed += 1
        return to_device(batch, self.device)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Fixed-order loader for validation/test (its own generator: it never touches the global RNG)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0))
