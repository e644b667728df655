"""How unlike the training images an image looks: the `unknown_score` of every prediction.

    means, precision = class_statistics(reference, labels)            # from the features stored in best.pt
    scale = reference_scale(reference, reference_logits, means, precision)   # stored in best.pt
    scores = unknown_scores(logits, features, means, precision, scale)  # (N,) higher = less like the training images

The score adds two measures, each in units of its spread over the training images (`reference_scale`): the
Mahalanobis distance of an image's L2-normalised features (what the head receives) to the nearest class mean, under
the classes' shared covariance shrunk half-way to a sphere (SHRINKAGE), and the energy score, -logsumexp(logits).
The distance sees what the backbone sees (a photo unlike every training photo); the energy sees what the head
learned (a photo between the classes). bench/trust_unknown.py measured it against the k-nearest-neighbour distance,
the energy, 1 - max probability and their combinations, holding out each class of the sample (linear and finetune)
and of Fashion-MNIST in turn (docs/design.md). The training features are a class-balanced sample of at most
REFERENCE_LIMIT images, float16, in best.pt with their classes (`REFERENCE_KEY`, `LABELS_KEY`); the class means and
the precision matrix are computed from them when a model is loaded. A checkpoint without them (or saved before the
classes were stored) scores by the energy alone. Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np

REFERENCE_LIMIT = 2000  # training feature vectors kept, class-balanced: 1280 float16 values each, 5 MB at most
REFERENCE_K = 3  # nearest training images of the k-nearest-neighbour distance (bench/trust_unknown.py compares it)
SHRINKAGE = 0.5  # the covariance's weight on a sphere of the same total variance (0.1, 0.5, 0.9, Ledoit-Wolf: 0.5)
REFERENCE_KEY = "unknown_reference"  # the checkpoint's (M, features) float16 tensor of training features
LABELS_KEY = "unknown_labels"  # the checkpoint's (M,) int64 tensor: the class index of each reference row
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
    """Mean cosine distance (0-2) of each row of `features` (N, D) to its k nearest rows of `reference` (M, D): the
    candidate the shipped score replaced (bench/trust_unknown.py still measures it)."""
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


def class_statistics(reference: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 (classes, D) means of the L2-normalised reference rows, one per class among `labels`, and the (D, D)
    inverse of their shared within-class covariance, shrunk by SHRINKAGE to a sphere of the same trace (few rows
    in many dimensions: the raw one is singular)."""
    unit, labels = _unit(reference).astype(np.float64), np.asarray(labels)
    present = np.unique(labels)
    means = np.stack([unit[labels == label].mean(axis=0) for label in present])
    residuals = unit - means[np.searchsorted(present, labels)]
    covariance = residuals.T @ residuals / len(unit)
    sphere = max(np.trace(covariance) / len(covariance), 1e-12)
    covariance = (1 - SHRINKAGE) * covariance + SHRINKAGE * sphere * np.eye(len(covariance))
    return means.astype(np.float32), np.linalg.inv(covariance).astype(np.float32)


def mahalanobis_distance(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each L2-normalised row of `features` (N, D) to the nearest of `means`, as
    u.P.u - 2 u.P.m + m.P.m (the ONNX graph computes the same expression)."""
    unit = _unit(features).astype(np.float64)
    means, precision = np.asarray(means, np.float64), np.asarray(precision, np.float64)
    projected = unit @ precision
    own = (projected * unit).sum(axis=1)
    constant = ((means @ precision) * means).sum(axis=1)
    return (own[:, None] - 2 * projected @ means.T + constant[None, :]).min(axis=1)


def reference_scale(
    reference: np.ndarray, reference_logits: np.ndarray, means: np.ndarray, precision: np.ndarray
) -> np.ndarray:
    """(4,) float32: mean and spread of the distance and of the energy over the training images, which put the two
    on one scale in `unknown_scores`."""
    distance, energy = mahalanobis_distance(reference, means, precision), energy_score(reference_logits)
    return np.array([distance.mean(), max(distance.std(), 1e-6), energy.mean(), max(energy.std(), 1e-6)], np.float32)


def unknown_statistics(checkpoint: dict) -> tuple[np.ndarray | None, ...]:
    """(reference features, class means, precision, scale) of a checkpoint as float32 arrays; four Nones without a
    reference, its classes or its scale (a run without training images, or saved before they were stored)."""
    parts = [checkpoint.get(key) for key in (REFERENCE_KEY, LABELS_KEY, SCALE_KEY)]
    if any(part is None for part in parts) or not len(parts[0]):
        return None, None, None, None
    reference, labels, scale = (part.float().numpy() if part.is_floating_point() else part.numpy() for part in parts)
    return (reference, *class_statistics(reference, labels), scale)


def unknown_scores(
    logits: np.ndarray,
    features: np.ndarray | None,
    means: np.ndarray | None = None,
    precision: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """The shipped out-of-distribution score: with the training statistics, the Mahalanobis distance to the nearest
    class plus the energy score, each in units of its spread over the training images; else the energy score."""
    energy = energy_score(logits)
    if features is None or means is None or precision is None or scale is None:
        return energy
    distance = mahalanobis_distance(features, means, precision)
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
