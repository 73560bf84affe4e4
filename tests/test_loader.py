"""The batch stream is a function of (seed, epoch, index): resuming at batch k replays the same batches."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from trainers.loader import BatchStream


class Noisy(Dataset):
    """Each item draws from the global RNG, as a random augmentation does."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        return {"image": torch.tensor([float(i)]), "noise": torch.rand(1)}


def _take(stream: BatchStream, n: int) -> list[dict]:
    return [stream() for _ in range(n)]


def test_resumed_stream_replays_the_same_batches():
    full = _take(BatchStream(Noisy(), batch_size=4, seed=3, device=torch.device("cpu")), 7)
    resumed = _take(BatchStream(Noisy(), batch_size=4, seed=3, device=torch.device("cpu"), start_batch=4), 3)
    for a, b in zip(full[4:], resumed, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["noise"], b["noise"])


def test_epochs_are_permutations_and_seeds_differ():
    stream = BatchStream(Noisy(), batch_size=5, seed=0, device=torch.device("cpu"))
    epoch = torch.cat([stream()["image"] for _ in range(2)]).flatten().tolist()
    assert sorted(epoch) == [float(i) for i in range(10)]
    other = BatchStream(Noisy(), batch_size=5, seed=1, device=torch.device("cpu"))()
    first = BatchStream(Noisy(), batch_size=5, seed=0, device=torch.device("cpu"))()
    assert not torch.equal(other["image"], first["image"])


def test_global_rng_does_not_change_the_stream():
    torch.manual_seed(0)
    a = BatchStream(Noisy(), batch_size=4, seed=9, device=torch.device("cpu"))()
    torch.manual_seed(12345)
    b = BatchStream(Noisy(), batch_size=4, seed=9, device=torch.device("cpu"))()
    assert torch.equal(a["noise"], b["noise"])


def test_workers_split_the_global_batch():
    whole = BatchStream(Noisy(), batch_size=4, seed=2, device=torch.device("cpu"))()["image"].flatten()
    parts = [BatchStream(Noisy(), batch_size=4, seed=2, device=torch.device("cpu"), rank=r, world_size=2)()["image"]
             for r in range(2)]
    assert torch.equal(torch.cat(parts).flatten(), whole)
