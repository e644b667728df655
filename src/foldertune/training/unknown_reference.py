"""The training features the `unknown_score` compares new images with, stored in best.pt at the end of a run.

    add_unknown_reference(run, cfg, data)   # best.pt gains "unknown_reference": (M, features) float16, M <= 2000,
                                            # "unknown_labels": their classes, and "unknown_scale": the spreads
                                            # that combine distance and energy

A class-balanced sample of at most REFERENCE_LIMIT training images goes through best.pt's network (in linear
mode the frozen backbone's features come from the feature cache, so this costs nothing there); their head inputs,
in float16, and their classes give the class means and covariance of `inference.unknown.mahalanobis_distance`.
The checkpoint stays loadable with `weights_only=True` (plain tensors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from foldertune.config import RunConfig
from foldertune.device import Runtime, choose_runtime
from foldertune.errors import UserError
from foldertune.inference.classifier import Classifier
from foldertune.inference.unknown import (
    LABELS_KEY,
    REFERENCE_KEY,
    REFERENCE_LIMIT,
    SCALE_KEY,
    class_statistics,
    reference_scale,
)
from foldertune.models.build import head_of, model_from_checkpoint
from foldertune.preprocessing import Preprocessing
from foldertune.runs.cache import cache_root
from foldertune.runs.checkpoint import load_checkpoint, save_checkpoint
from foldertune.runs.folder import RunFolder
from foldertune.training.frozen_features import extract_features, feature_store
from foldertune.training.prepare import PreparedData


def reference_sample(labels: list[int], *, limit: int = REFERENCE_LIMIT, seed: int = 0) -> list[int]:
    """Indices of at most `limit` training images, as many of each class as it allows (rare classes whole)."""
    labels = np.asarray(labels)
    if len(labels) <= limit:
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    chosen, left, classes_left = [], limit, len(groups)
    for rows in sorted(groups, key=len):  # small classes first: what they leave goes to the larger ones
        share = left // classes_left
        take = rows if len(rows) <= share else rng.choice(rows, share, replace=False)
        chosen.append(take)
        left, classes_left = left - len(take), classes_left - 1
    return sorted(np.concatenate(chosen).tolist())


def add_unknown_reference(
    run: RunFolder, cfg: RunConfig, data: PreparedData, *, quiet: bool = True, classifier: Classifier | None = None
) -> int:
    """Store the reference features of best.pt's network in best.pt; the number of training images used.
    `classifier`: best.pt's network as the end of the run already built it (in the run's precision), reused."""
    samples = data.samples("train")
    if not samples:
        return 0
    rows = reference_sample([label for _, label in samples], seed=cfg.train.seed)
    chosen, labels = [samples[i][0] for i in rows], np.array([samples[i][1] for i in rows], dtype=np.int64)
    checkpoint = load_checkpoint(run.best)
    runtime = choose_runtime(cfg.train.device, cfg.train.precision)  # the linear run's cached features' precision
    model = classifier.model if classifier is not None else model_from_checkpoint(checkpoint).eval().to(runtime.device)
    pre = Preprocessing.from_dict(checkpoint["preprocessing"])
    store = None
    if cfg.train.mode == "linear" and cfg.train.feature_cache == "disk":  # the backbone is frozen: cached features
        store = feature_store(model, cfg.model.backbone, pre, precision=runtime.precision,
                              root=cache_root(cfg.data.cache_dir))  # fmt: skip
    if store is None and classifier is not None:  # the network the evaluation runs next: built and warm already
        reference = _head_inputs(classifier, chosen, runtime, quiet=quiet).to(torch.float16).contiguous()
    else:
        features, _ = extract_features(model, cfg.model.backbone, chosen, pre, runtime, store=store, workers=0,
                                       progress=not quiet, desc="reference features")  # fmt: skip
        reference = features[:, 0].to(torch.float16).contiguous()
    with torch.no_grad():
        logits = head_of(model, cfg.model.backbone)(reference.float().to(runtime.device)).float().cpu().numpy()
    means, precision = class_statistics(reference.float().numpy(), labels)
    checkpoint[REFERENCE_KEY] = reference
    checkpoint[LABELS_KEY] = torch.from_numpy(labels)
    checkpoint[SCALE_KEY] = torch.from_numpy(reference_scale(reference.float().numpy(), logits, means, precision))
    save_checkpoint(run.best, checkpoint)
    return len(chosen)


def _head_inputs(classifier: Classifier, paths: list[str], runtime: Runtime, *, quiet: bool) -> torch.Tensor:
    """(N, features) float32: what the head receives for each image, from the classifier's (fused) network in the
    run's precision (as extract_features computes them)."""
    rows = []
    for chunk, errors, images in classifier.load_batches([Path(p) for p in paths], progress=not quiet):
        unreadable = next(((path, error) for path, error in zip(chunk, errors, strict=True) if error), None)
        if unreadable:
            raise UserError(f"'{unreadable[0]}' became unreadable since the scan ({unreadable[1]}); restore it or "
                            "start again.")  # fmt: skip
        with runtime.autocast():
            rows.append(classifier.outputs(images)[2])
    return torch.from_numpy(np.concatenate(rows))
