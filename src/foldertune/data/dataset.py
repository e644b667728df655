"""A map-style Dataset over (path, label) pairs and a seeded batch sampler, with reproducible augmentation.

    dataset = ImageDataset(samples, TrainReader(pre), seed=0, augment=True)
    sampler = EpochBatchSampler(len(dataset), batch_size=32, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=2, persistent_workers=True)
    sampler.set_epoch(3)   # epoch 3's order and augmentation, whatever ran before

The sampler hands out (index, epoch) keys; the dataset seeds each sample's augmentation from (seed, epoch, index).
So an epoch's batches are a pure function of the seed and the epoch number: independent of the number of worker
processes, of persistent workers, and of whether the run was resumed halfway.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from foldertune.data.images import ImageReadError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, sample)."""
    return ((seed * 1_000_003 + epoch) * 1_000_000_007 + index) % (2**63)


class ImageDataset(Dataset):
    """Images read by `read` (a TrainReader or EvalReader: path -> uint8 tensor); items are (tensor, label index)."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        read: Callable[[str], torch.Tensor],
        *,
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.read = read
        self.seed = seed
        self.augment = augment  # random transforms: seed them per sample

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if not self.augment:
            return self._read(index)
        with torch.random.fork_rng(devices=[]):  # leaves the caller's generator as it was
            # the CPU generator alone, which the readers draw from: torch.manual_seed also queues a seed for every
            # uninitialised accelerator (CUDA, XPU, MTIA), recording the caller's stack for each: 0.4-0.6 ms, some
            # 15% of the CPU time it takes to read one of the sample's photos
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self._read(index)

    def _read(self, index: int) -> tuple[torch.Tensor, int]:
        """The image at `index`; if it became unreadable since the scan, warn and use the next one instead."""
        for attempt in range(len(self.samples)):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                return self.read(path), label
            except ImageReadError as error:
                warnings.warn(f"skipping '{path}', unreadable since the scan: {error}", stacklevel=2)
        raise RuntimeError("no image in the dataset can be read any more")


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (index, epoch) keys, in a seeded shuffle per epoch (or in order, for evaluation).

    A last batch of a single image is dropped when shuffling, because BatchNorm cannot train on one sample; the
    shuffle changes every epoch, so no image is left out for good. With `world_size` > 1 (distributed training),
    each process takes its share of the epoch's order through torch's DistributedSampler: every share has the same
    length (the last few indices repeat), so every process runs the same number of steps.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.size = size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)  # balanced draws
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.skip = 0  # batches of this epoch already trained before an interruption
        self.rank = rank
        self.world_size = world_size

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        """Batches of `epoch` from now on, leaving out its first `skip` (to resume an interrupted epoch)."""
        self.epoch = epoch
        self.skip = skip

    def indices(self) -> list[int]:
        """This process's dataset indices for the current epoch, in order (before batching and skipping)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 0) + 1)
            if self.weights is not None:  # --balance sampler: `size` draws with replacement, seeded like the shuffle
                order = torch.multinomial(self.weights, self.size, replacement=True, generator=generator).tolist()
            else:
                order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.world_size == 1:
            return order
        share = DistributedSampler(range(self.size), self.world_size, self.rank, shuffle=False)  # the order is ours
        return [order[position] for position in share]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # the epoch and skip are fixed when the pass begins: a later set_epoch changes no pass begun
        return self._batches(self.indices(), self.epoch, self.skip)

    def _batches(self, indices: list[int], epoch: int, skip: int) -> Iterator[list[tuple[int, int]]]:
        for start in range(skip * self.batch_size, len(indices), self.batch_size):
            batch = indices[start : start + self.batch_size]
            if self._drops(len(batch), start):
                return
            yield [(index, epoch) for index in batch]

    def __len__(self) -> int:
        size = -(-self.size // self.world_size)  # each process's share, padded to equal length
        batches = -(-size // self.batch_size)
        last_start = (batches - 1) * self.batch_size
        return batches - self._drops(size - last_start, last_start) if batches else 0

    def _drops(self, batch_length: int, start: int) -> bool:
        """A lone image left over after full batches is dropped when training (BatchNorm needs two)."""
        return self.shuffle and self.batch_size > 1 and batch_length == 1 and start > 0
