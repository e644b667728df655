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
from torch.utils.data import Dataset, Sampler

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
            torch.manual_seed(sample_seed(self.seed, epoch, index))
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
    shuffle changes every epoch, so no image is left out for good.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.skip = 0  # batches of this epoch already trained before an interruption

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        """Batches of `epoch` from now on, leaving out its first `skip` (to resume an interrupted epoch)."""
        self.epoch = epoch
        self.skip = skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 0) + 1)
            return torch.randperm(self.size, generator=generator).tolist()
        return list(range(self.size))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices = self._indices()
        for start in range(self.skip * self.batch_size, len(indices), self.batch_size):
            batch = indices[start : start + self.batch_size]
            if self._drops(len(batch), start):
                return
            yield [(index, self.epoch) for index in batch]

    def __len__(self) -> int:
        batches = -(-self.size // self.batch_size)
        last_start = (batches - 1) * self.batch_size
        return batches - self._drops(self.size - last_start, last_start) if batches else 0

    def _drops(self, batch_length: int, start: int) -> bool:
        """A lone image left over after full batches is dropped when training (BatchNorm needs two)."""
        return self.shuffle and self.batch_size > 1 and batch_length == 1 and start > 0
