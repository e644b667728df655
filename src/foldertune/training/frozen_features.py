"""Frozen-backbone features for linear mode: each image goes through the backbone once, not once per epoch.

    store = feature_store(model, "resnet18", pre, precision="fp32", root=cache_root(None))
    features, _ = extract_features(model, "resnet18", paths, pre, runtime, store=store)  # (N, views, 512) float32
    batches = FeatureBatches(features, labels, EpochBatchSampler(N, 32, shuffle=True), seed=0)
    for inputs, targets in batches: logits = head(inputs)                             # the DataLoader's stand-in

In linear mode the backbone is frozen and in eval mode, so what it hands the head for a given input never changes,
yet the tutorial's loop recomputes it every epoch. Here the features are computed once, kept in memory for the run
and (by default) in the cache folder for later runs, and every epoch trains the head on them: a 20-epoch linear
run costs about one pass over the images.

Views. View 0 is the evaluation input (resize + center crop): with `views=1`, the default, the head trains without
augmentation, which suits a linear head on a few hundred to a few thousand images and makes the validation
numbers during training those of the final evaluation. `views=V` adds V-1 random crops + flips per image (the
training augmentation, seeded by the file's content so that they are the same in every run), drawn once and
stored; each epoch every image uses one of its V views, picked at random.

Cache key. `<cache>/features/<key>/`, key = digest of the backbone's frozen weights (head excluded), the
preprocessing and the precision; inside, one entry per image and view, named by the digest of the file's bytes.
So a changed file, other weights (another backbone, --weights) or another preprocessing (--img-size) is a miss,
and a renamed or moved file a hit.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from foldertune.data.dataset import EpochBatchSampler, sample_seed
from foldertune.data.images import ImageReadError
from foldertune.data.readers import EvalReader, TrainReader
from foldertune.data.transforms import model_input
from foldertune.device import Runtime
from foldertune.errors import UserError
from foldertune.models.build import capture_head_input, fuse_for_inference, head_of
from foldertune.models.registry import get_backbone
from foldertune.notebook import tqdm
from foldertune.preprocessing import Preprocessing
from foldertune.runs.cache import ArrayStore, file_digest
from foldertune.training.interrupt import ignore_stop_signals

FORMAT = 1  # bump when what is stored changes meaning: old entries are then simply never read again


def feature_store(
    model: nn.Module, backbone: str, pre: Preprocessing, *, precision: str, root: Path | None, writable: bool = True
) -> ArrayStore | None:
    """The cache folder's store for this backbone's frozen weights + preprocessing + precision (None: no disk)."""
    if root is None:
        return None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([FORMAT, backbone, pre.to_dict(), precision]).encode())
    head = get_backbone(backbone).head + "."
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(head):  # the head trains; everything else is frozen and defines the features
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    folder = root / "features" / f"{backbone.replace('/', '-')}-{digest.hexdigest()}"  # timm/NAME: timm-NAME-...
    store = ArrayStore(folder, writable=writable)
    if writable:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "about.json").write_text(
                json.dumps({"backbone": backbone, "preprocessing": pre.to_dict(), "precision": precision}, indent=1),
                encoding="utf-8",
            )
        except OSError as error:
            warnings.warn(f"feature cache '{folder}' is not writable ({error}); features stay in memory", stacklevel=2)
            store.writable = False
    return store


def extract_features(
    model: nn.Module,
    backbone: str,
    paths: Sequence[str],
    pre: Preprocessing,
    runtime: Runtime,
    *,
    store: ArrayStore | None,
    views: int = 1,
    batch_size: int = 64,
    workers: int = 0,
    max_pixels: int | None = None,
    progress: bool = True,
    desc: str = "features",
) -> tuple[torch.Tensor, int]:
    """(N, views, features) float32 on the CPU, what the head receives for each image and view; and how many of
    these were computed (the rest came from the store).

    Entries already in `store` are read; the rest go through the network (in eval mode, without gradients) and are
    stored. A file that became unreadable since the scan is a UserError naming it.
    """
    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(_digest, paths))
    width = head_of(model, backbone).in_features
    features = torch.zeros(len(paths), views, width)
    missing: list[tuple[int, int]] = []  # (image, view)
    for i, digest in enumerate(digests):
        for view in range(views):
            cached = store.load(_entry(digest, view), shape=(width,)) if store else None
            if cached is None:
                missing.append((i, view))
            else:
                features[i, view] = torch.from_numpy(cached)
    if not missing:
        return features, 0

    dataset = _ViewDataset([(paths[i], view, digests[i]) for i, view in missing], pre, max_pixels)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        generator=torch.Generator(),
        worker_init_fn=ignore_stop_signals,
    )  # fmt: skip  (drawing worker seeds must not move the global RNG; stop signals are the main process's)
    layout = torch.channels_last if runtime.channels_last else torch.preserve_format
    fused = fuse_for_inference(model).to(memory_format=layout)  # BatchNorm folded: faster, same features
    bar = tqdm(total=len(missing), desc=desc, unit="img", leave=False, disable=None if progress else True)
    with torch.inference_mode(), capture_head_input(fused, backbone) as captured:
        for images, positions, errors in loader:
            for position, error in zip(positions.tolist(), errors, strict=True):
                if error:
                    raise UserError(
                        f"'{paths[missing[position][0]]}' became unreadable since the scan ({error}); restore it or "
                        "start again."
                    )
            with runtime.autocast():
                fused(model_input(images, pre, device=runtime.device, channels_last=runtime.channels_last))
            batch = captured.pop().float().flatten(1).cpu()
            for row, position in zip(batch, positions.tolist(), strict=True):
                i, view = missing[position]
                features[i, view] = row
                if store:
                    _save(store, _entry(digests[i], view), row.numpy())
            bar.update(len(positions))
    bar.close()
    return features, len(missing)


class FeatureBatches:
    """Stands in for the training or evaluation DataLoader: (features, labels) batches in the sampler's order.

    With several views, each epoch picks one view per image from a generator seeded by (seed, epoch).
    """

    def __init__(
        self, features: torch.Tensor, labels: Sequence[int], batch_sampler: EpochBatchSampler, *, seed: int
    ) -> None:
        self.features = features  # (N, views, width)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.batch_sampler = batch_sampler
        self.seed = seed

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count, views = self.features.shape[:2]
        if views > 1 and self.batch_sampler.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.batch_sampler.epoch, 0) + 3)
            chosen = torch.randint(views, (count,), generator=generator)
        else:
            chosen = torch.zeros(count, dtype=torch.long)  # evaluation: always the evaluation view
        for keys in self.batch_sampler:
            index = torch.tensor([i for i, _ in keys])
            yield self.features[index, chosen[index]], self.labels[index]


class _ViewDataset(Dataset):
    """(uint8 image, position, error) for each (path, view, digest): view 0 evaluation, others seeded crops."""

    def __init__(self, items: list[tuple[str, int, str]], pre: Preprocessing, max_pixels: int | None) -> None:
        limit = {"max_pixels": max_pixels} if max_pixels else {}
        self.items = items
        self.eval_read = EvalReader(pre, **limit)
        self.train_read = TrainReader(pre, **limit)
        self.blank = torch.zeros(3, pre.crop_size, pre.crop_size, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, str]:
        path, view, digest = self.items[position]
        try:
            if view == 0:
                return self.eval_read(path), position, ""
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(int(digest[:15], 16), view, 0))  # same crops for the same file
                return self.train_read(path), position, ""
        except ImageReadError as error:
            return self.blank, position, str(error)


def _entry(digest: str, view: int) -> str:
    return digest if view == 0 else f"{digest}-{view}"


def _digest(path: str) -> str:
    try:
        return file_digest(path)
    except OSError as error:
        reason = error.strerror or error
        raise UserError(f"'{path}' cannot be read any more ({reason}); restore it or start again.") from None


def _save(store: ArrayStore, name: str, array: np.ndarray) -> None:
    try:
        store.save(name, array)
    except OSError as error:  # a full disk must not stop training: the features are in memory anyway
        warnings.warn(f"feature cache: cannot write to '{store.folder}' ({error}); keeping features in memory only",
                      stacklevel=3)  # fmt: skip
        store.writable = False
