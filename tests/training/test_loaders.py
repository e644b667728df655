import multiprocessing
import os

import torch

from foldertune.config import RunConfig
from foldertune.device import choose_runtime
from foldertune.models.registry import get_backbone
from foldertune.training.loaders import EpochBatches, build_loaders, default_workers
from foldertune.training.prepare import prepare_data


def test_workers_start_with_the_loaders_and_the_first_epoch_loses_no_batch(small_dataset):
    def first_epochs(workers: int) -> tuple[dict, int]:
        cfg = RunConfig.from_flat(data=str(small_dataset), workers=workers, batch_size=4, img_size=32)
        prepared = prepare_data(cfg.data, seed=0, progress=False)
        before = len(multiprocessing.active_children())
        loaders = build_loaders(prepared, get_backbone("mobilenet_v2").preprocessing, cfg, choose_runtime("cpu"))
        started = len(multiprocessing.active_children()) - before  # before any batch was asked for
        loaders["train"].batch_sampler.set_epoch(1)
        batches = {split: [(images, labels) for images, labels in loader] for split, loader in loaders.items()}
        ahead = EpochBatches(loaders["train"], 2)  # begun before validating, as fit.py does
        sent = getattr(ahead.batches, "_send_idx", 0)  # batches the workers were asked for before the first one
        batches["val"] = [(images, labels) for images, labels in loaders["val"]]
        loaders["train"].batch_sampler.set_epoch(5)  # a pass once begun keeps its epoch
        batches["train 2"] = list(ahead)
        return batches, started, sent

    in_process, none_started, _ = first_epochs(0)
    with_workers, started, sent = first_epochs(1)
    assert none_started == 0 and started == 2  # one worker per loader, forked while this process is small
    assert sent == 2  # the next epoch's first two batches (DataLoader's prefetch) were being read while validating
    for split in ("train", "val", "train 2"):
        assert len(with_workers[split]) == len(in_process[split]) > 0
        for (a, x), (b, y) in zip(with_workers[split], in_process[split], strict=True):
            assert torch.equal(a, b) and torch.equal(x, y)
    assert not torch.equal(in_process["train"][0][0], in_process["train 2"][0][0])  # epoch 2: another order


def test_default_workers_take_this_process_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers("cpu") == 8  # the network's threads need the cores too
    assert default_workers("cuda") == 15  # a GPU needs all the decoding it can get
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, four GPUs: 4 cores each
    assert default_workers("cuda") == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert default_workers("cuda") == default_workers("cpu") == 1
