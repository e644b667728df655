"""When to answer "unknown": the confidence threshold, and how unlike the training classes an image looks.

    scores = unknown_scores(logits, features, reference)      # (N,) higher = less like the training classes
    reference = reference_features(train_features, train_labels)   # at most REFERENCE_LIMIT rows, float16

The shipped `unknown_score` is the mean cosine distance of an image's features (what the head receives) to its
REFERENCE_K nearest training images, a class-balanced sample of at most REFERENCE_LIMIT training features stored
with the run (`reference_features.npz`) and in exports. Measured by bench/trust_unknown.py (one class of the sample
held out, a linear head on the other four), it separates the unseen class from the held-in validation photos
better than 1 - max probability or the energy score; where no reference is stored (a bare checkpoint file) the
score falls back to the energy score, -logsumexp(logits), shifted to be comparable run to run is not attempted.
Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np

REFERENCE_LIMIT = 2000  # training feature vectors kept, class-balanced: 1280 float16 values each, 5 MB at most
REFERENCE_K = 10  # nearest training images the distance is averaged over
REFERENCE_KEY = "unknown_reference"  # the checkpoint's (M, features) float16 tensor of training features


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


def reference_features(features: np.ndarray, labels: np.ndarray, *, limit: int = REFERENCE_LIMIT, seed: int = 0):
    """A class-balanced sample of at most `limit` rows of training `features`, as float16 (row order kept)."""
    labels = np.asarray(labels)
    if len(features) <= limit:
        return np.asarray(features, dtype=np.float16)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    share = limit // len(classes)
    chosen = []
    for label in classes:  # rare classes keep all their rows; the rest is shared among the others
        rows = np.flatnonzero(labels == label)
        chosen.append(rows if len(rows) <= share else rng.choice(rows, share, replace=False))
    kept = np.sort(np.concatenate(chosen))[:limit]
    return np.asarray(features[kept], dtype=np.float16)


def unknown_scores(logits: np.ndarray, features: np.ndarray | None, reference: np.ndarray | None) -> np.ndarray:
    """The shipped out-of-distribution score: the k-nearest-neighbour distance to the training features when a
    reference is stored, else the energy score."""
    if reference is not None and features is not None and len(reference):
        return knn_distance(features, reference)
    return energy_score(logits)


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
