"""Data loaders for training: images (optionally through --cache) or, in linear mode, the backbone's features.

    loaders = build_loaders(data, pre, cfg, runtime)                 # {"train": DataLoader, "val": DataLoader}
    loaders = build_feature_loaders(model, data, pre, cfg, runtime, dist, quiet=True, log=print)

Each split has an EpochBatchSampler: seeded per epoch, and sharded between processes under torchrun.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from foldertune.config import RunConfig
from foldertune.data.dataset import EpochBatchSampler, ImageDataset
from foldertune.data.device_decode import EncodedReader, pack_batch
from foldertune.data.image_cache import ImageCache
from foldertune.data.images import open_image
from foldertune.data.readers import EvalReader, TrainReader
from foldertune.device import Runtime
from foldertune.preprocessing import Preprocessing
from foldertune.runs.cache import cache_root
from foldertune.training.distributed import Distributed, shard, unshard
from foldertune.training.frozen_features import FeatureBatches, extract_features, feature_store
from foldertune.training.interrupt import ignore_stop_signals
from foldertune.training.prepare import PreparedData


def build_loaders(
    data: PreparedData,
    pre: Preprocessing,
    cfg: RunConfig,
    runtime: Runtime,
    dist: Distributed | None = None,
    *,
    progress: bool = False,
) -> dict[str, DataLoader]:
    """A shuffled, augmented train loader and an in-order val loader with twice the batch size (each process's
    share of them, with `dist`).

    With --decode device, the batches are PackedImages (data/device_decode.py) that loop.py decodes on the device.
    With --cache, every image is decoded once here, before the loader workers start (see data/image_cache.py).
    The workers of both loaders start here too (`start_workers`).
    """
    workers = default_workers(runtime.device.type) if cfg.data.workers is None else cfg.data.workers
    loaders = {}
    for split in ("train", "val"):
        samples = data.samples(split)
        if not samples:
            continue
        train = split == "train"
        opener = open_image
        if cfg.data.cache != "off":
            side = 2 * pre.crop_size if train else pre.resize_size  # what each reader needs (see image_cache.py)
            cache = ImageCache(cfg.data.cache, side=side, root=cache_root(cfg.data.cache_dir),
                               max_pixels=cfg.data.max_pixels)  # fmt: skip
            cache.fill([path for path, _ in samples], progress=progress, desc=f"caching {split} images")
            opener = cache.open
        limits = {"max_pixels": cfg.data.max_pixels, "opener": opener}
        reader = TrainReader(pre, augment=cfg.train.augment, **limits) if train else EvalReader(pre, **limits)
        if cfg.data.decode == "device":  # the workers read bytes and draw the crops; loop.py decodes on the device
            reader = EncodedReader(pre, train=train, max_pixels=cfg.data.max_pixels)
        dataset = ImageDataset(samples, reader, seed=cfg.train.seed, augment=train)
        batch_size = cfg.train.batch_size if train else 2 * cfg.train.batch_size  # no gradients: twice fits
        dist = dist or Distributed()
        sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=train, seed=cfg.train.seed, rank=dist.rank,
                                    world_size=dist.world_size, weights=_draw_weights(samples, cfg, train))  # fmt: skip
        loaders[split] = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=runtime.device.type == "cuda",
            collate_fn=pack_batch if cfg.data.decode == "device" else None,
            generator=torch.Generator(),  # its worker seeds are unused; drawing them must not move the global RNG
            worker_init_fn=ignore_stop_signals,  # Ctrl-C / SIGTERM to the process group: the main process saves first
        )
    for loader in loaders.values():
        start_workers(loader)
    return loaders


def start_workers(loader: DataLoader) -> None:
    """Fork a loader's persistent worker processes now, idle, while this process is still small.

    A forked worker shares its parent's memory until either writes to it; from then on each holds its own copy.
    Forked later (torch starts workers at the first `iter`), the validation loader's workers would be copies of a
    process that has just trained an epoch, and would keep the pages of its freed activations: about 2 GB each for
    mobilenet_v2 at batch 32 (docs/design.md). The sampler is told to skip the whole epoch meanwhile, so the workers
    prefetch nothing that the first real pass would throw away.
    """
    if loader.num_workers == 0 or not loader.persistent_workers:
        return
    sampler = loader.batch_sampler
    epoch, skip = sampler.epoch, sampler.skip
    sampler.set_epoch(epoch, skip=sampler.size)  # more batches than the epoch has
    iter(loader)  # persistent workers: the DataLoader keeps this iterator and resets it at the next pass
    sampler.set_epoch(epoch, skip=skip)


class EpochBatches:
    """One epoch's pass of a training loader, begun when it is made: its worker processes are sent the first
    batches' indices at once (DataLoader's prefetch) and read them while this process does other work.

        ahead = EpochBatches(loader, epoch + 1)   # before validating epoch `epoch` (fit.py)
        for inputs, targets in ahead: ...         # epoch + 1: its first batches are ready

    Begun only after its first batch is asked for, a pass would wait for the workers to read it, and they would then
    read its second and third batches at once, beside the first step's compute: on the sample (110 training photos,
    4 steps an epoch) that was 0.08 s of waiting and a first step 0.15 s slower, every epoch.
    """

    def __init__(self, loader: DataLoader | FeatureBatches, epoch: int, *, skip: int = 0) -> None:
        loader.batch_sampler.set_epoch(epoch, skip=skip)
        self.length = len(loader)
        self.batches = iter(loader)

    def __len__(self) -> int:
        """The epoch's steps (those skipped by `skip` included), as len(loader) counts them."""
        return self.length

    def __iter__(self) -> Iterator:
        return self.batches


def build_feature_loaders(
    model: nn.Module,
    data: PreparedData,
    pre: Preprocessing,
    cfg: RunConfig,
    runtime: Runtime,
    dist: Distributed,
    *,
    quiet: bool,
    log,
) -> dict[str, FeatureBatches]:
    """Linear mode: the frozen backbone's features of every train and val image, computed once (or read from the
    cache folder), served in batches like the image loaders. With several processes, each computes a share of the
    features and every process gets them all."""
    tc = cfg.train
    root = cache_root(cfg.data.cache_dir) if tc.feature_cache == "disk" else None
    store = feature_store(model, cfg.model.backbone, pre, precision=runtime.precision, root=root)
    workers = default_workers(runtime.device.type) if cfg.data.workers is None else cfg.data.workers
    loaders, computed, total = {}, 0, 0
    for split in ("train", "val"):
        samples = data.samples(split)
        if not samples:
            continue
        train = split == "train"
        features, new = extract_features(
            model, cfg.model.backbone, shard([path for path, _ in samples], dist.rank, dist.world_size), pre,
            runtime, store=store, views=tc.feature_views if train else 1, batch_size=2 * tc.batch_size,
            workers=workers, max_pixels=cfg.data.max_pixels, progress=not quiet, desc=f"features ({split})",
        )  # fmt: skip
        if dist.enabled:
            features, new = unshard(dist.gather(features)), int(dist.sum([new])[0])
        computed, total = computed + new, total + features.shape[0] * features.shape[1]
        sampler = EpochBatchSampler(len(samples), tc.batch_size if train else 2 * tc.batch_size, shuffle=train,
                                    seed=tc.seed, rank=dist.rank, world_size=dist.world_size,
                                    weights=_draw_weights(samples, cfg, train))  # fmt: skip
        loaders[split] = FeatureBatches(features, [label for _, label in samples], sampler, seed=tc.seed)
    where = f"cache {store.folder}" if store else "kept in memory"
    log(f"features: {total} image view(s), {computed} computed by the frozen backbone, {total - computed} from the "
        f"cache ({where})")  # fmt: skip
    return loaders


MAX_WORKERS = {"cpu": 8, "accelerator": 32}


def default_workers(device_type: str = "cpu") -> int:
    """Loader processes: this process's share of the cores (torchrun starts one training process per GPU) less
    the one that runs it, at least one. At most 8 when the network trains on the CPU, whose threads need the cores
    too; at most 32 with a GPU, which trains mobilenet_v2 faster than 16 cores decode photos."""
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    share = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_WORKERS["cpu" if device_type == "cpu" else "accelerator"], share - 1))


def class_weights(labels: list[int], classes: int) -> list[float]:
    """(images / classes) / images of the class, per class: a class of average size weighs 1 (0 for an absent one)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)
    return [len(labels) / (classes * count) if count else 0.0 for count in counts]


def _draw_weights(samples: list[tuple[str, int]], cfg: RunConfig, train: bool) -> list[float] | None:
    """--balance sampler: each training image's chance of being drawn, the inverse of its class's size."""
    if not train or cfg.train.balance != "sampler":
        return None
    labels = [label for _, label in samples]
    per_class = class_weights(labels, max(labels) + 1)
    return [per_class[label] for label in labels]
