"""How unlike the training images an image looks: the `unknown_score` of every prediction.

    scale = reference_scale(reference, reference_logits)      # at the end of training, stored in best.pt
    scores = unknown_scores(logits, features, reference, scale)   # (N,) higher = less like the training images

The score adds two measures, each in units of its spread over the training images (`reference_scale`): the mean
cosine distance of an image's features (what the head receives) to its REFERENCE_K nearest training images, and the
energy score, -logsumexp(logits). The distance sees what the backbone sees (a photo unlike every training photo);
the energy sees what the head learned (a photo between the classes). bench/trust_unknown.py measured each alone
and together, holding out each class of the sample and of Fashion-MNIST in turn (docs/design.md). The training
features are a class-balanced sample of at most REFERENCE_LIMIT images, float16, in best.pt (`REFERENCE_KEY`); a
checkpoint without them scores by the energy alone. Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np

REFERENCE_LIMIT = 2000  # training feature vectors kept, class-balanced: 1280 float16 values each, 5 MB at most
REFERENCE_K = 3  # nearest training images the distance is averaged over (1, 3, 10 measured: 3)
REFERENCE_KEY = "unknown_reference"  # the checkpoint's (M, features) float16 tensor of training features
SCALE_KEY = "unknown_scale"  # the checkpoint's (4,) float32 tensor from `reference_scale`


def energy_score(logits: np.ndarray) -> np.ndarray:
    """-logsumexp of each row of logits (N, classes): higher = less like the training classes."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    return -(top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))


def max_probability_score(probabilities: np.ndarray) -> np.ndarray:
    """1 - the top probability: the baseline."""
    return 1.0 - np.asarray(probabilities, dtype=np.float64).max(axis=1)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def knn_distance(features: np.ndarray, reference: np.ndarray, *, k: int = REFERENCE_K) -> np.ndarray:
    """Mean cosine distance (0-2) of each row of `features` (N, D) to its k nearest rows of `reference` (M, D)."""
    if len(features) == 0:
        return np.zeros(0)
    unit, ref = _unit(features), _unit(reference)
    k = max(1, min(k, len(ref)))
    out = np.empty(len(unit))
    for start in range(0, len(unit), 256):  # (256, M) similarities at a time
        similarity = unit[start : start + 256] @ ref.T
        nearest = np.partition(-similarity, k - 1, axis=1)[:, :k]
        out[start : start + 256] = 1.0 + nearest.mean(axis=1)  # 1 - mean similarity
    return out


def leave_one_out_distance(reference: np.ndarray, *, k: int = REFERENCE_K) -> np.ndarray:
    """Each reference row's mean cosine distance to its k nearest other rows (what a training image scores)."""
    unit = _unit(reference)
    k = max(1, min(k, len(unit) - 1))
    out = np.empty(len(unit))
    for start in range(0, len(unit), 256):
        similarity = unit[start : start + 256] @ unit.T
        similarity[np.arange(len(similarity)), start + np.arange(len(similarity))] = -np.inf  # not itself
        out[start : start + 256] = 1.0 + np.partition(-similarity, k - 1, axis=1)[:, :k].mean(axis=1)
    return out


def reference_scale(reference: np.ndarray, reference_logits: np.ndarray) -> np.ndarray:
    """(4,) float32: mean and spread of the distance and of the energy over the training images, which put the two
    on one scale in `unknown_scores`."""
    distance, energy = leave_one_out_distance(reference), energy_score(reference_logits)
    return np.array([distance.mean(), max(distance.std(), 1e-6), energy.mean(), max(energy.std(), 1e-6)], np.float32)


def unknown_scores(
    logits: np.ndarray, features: np.ndarray | None, reference: np.ndarray | None, scale: np.ndarray | None = None
) -> np.ndarray:
    """The shipped out-of-distribution score: with a stored reference, the distance to the k nearest training
    features plus the energy score, each in units of its spread over the training images; else the energy score."""
    energy = energy_score(logits)
    if reference is None or features is None or not len(reference) or scale is None:
        return energy
    distance = knn_distance(features, reference)
    return (distance - scale[0]) / scale[1] + (energy - scale[2]) / scale[3]


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Probability that a random `outside` score exceeds a random `inside` one (ties count half): the AUROC."""
    inside, outside = np.asarray(inside, float), np.asarray(outside, float)
    both = np.concatenate([inside, outside])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # average ranks of ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[len(inside) :].sum() - len(outside) * (len(outside) + 1) / 2) / (len(inside) * len(outside)))
