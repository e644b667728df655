"""Which labels look wrong and which images look like no class, from frozen-backbone features alone.

    probabilities = out_of_fold_probabilities(features, labels, groups, folds=5, seed=0)   # (N, classes)
    verdict = rank_label_issues(labels, probabilities)       # .flagged (N,) bool, .score (N,) 0..1, .suggested (N,)
    outliers = outlier_scores(features)                      # (N,) mean cosine distance to the nearest neighbours

Out-of-fold: each image's probabilities come from a linear head (logistic regression on standardised features)
trained on the other folds, so no image votes for its own label; folds are stratified by class, and the members of
one group (exact or near copies) share a fold, or a copy would vouch for its twin. The score is 1 - the out-of-fold
probability of the given class (1: surely wrong); an image is flagged when another class is the most probable and
the score reaches MIN_LABEL_SCORE. cleanlab (the `labels` extra) ranks the flagged images by its label quality.
Measured on the bundled sample with flipped labels (BENCHMARKS.md): cleanlab's own `find_label_issues` flagged
more of the sample's genuinely ambiguous photos than this threshold does, at about the same recall.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

FOLDS = 5  # linear heads trained per label check; each sees 80% of the images
MIN_LABEL_SCORE = 0.8  # measured on the sample with 5-20% of labels flipped: recall 0.9+ at precision 0.6+
NEIGHBOURS = 10  # the outlier score averages the distance to this many nearest images
OUTLIER_SPREAD = 4.0  # an outlier is this many median absolute deviations above the median score (a black
# frame and a screenshot among 80 sample photos measured 6.1 and 4.5; the photos at most 4.5, a black slate)
BLOCK = 1024  # rows of the similarity matrix held at once


@dataclass(frozen=True)
class LabelVerdict:
    flagged: np.ndarray  # (N,) bool: a likely label error
    score: np.ndarray  # (N,) float: 1 - out-of-fold probability of the given class
    suggested: np.ndarray  # (N,) int: the most probable class out of fold
    order: np.ndarray  # (N,) int: image indices, the likeliest label error first
    method: str  # what ranked them: "cleanlab" or "the score (cleanlab not installed)"


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """(N, classes) probabilities, each row from a linear head that never saw that image nor its copies."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    classes = int(labels.max()) + 1
    smallest = int(np.bincount(labels, minlength=classes).min())
    folds = max(2, min(folds, smallest, len(np.unique(groups))))
    probabilities = np.zeros((len(labels), classes), dtype=np.float64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class smaller than the folds, lbfgs iteration limits: both harmless here
        for train, held_out in splitter.split(features, labels, groups):
            scaler = StandardScaler().fit(features[train])
            head = LogisticRegression(C=0.01, max_iter=300).fit(scaler.transform(features[train]), labels[train])
            probabilities[np.ix_(held_out, head.classes_)] = head.predict_proba(scaler.transform(features[held_out]))
    return probabilities


def rank_label_issues(
    labels: np.ndarray, probabilities: np.ndarray, *, min_score: float = MIN_LABEL_SCORE
) -> LabelVerdict:
    """Likely label errors: another class is the most probable out of fold and the given one has at most
    1 - `min_score`; ranked by cleanlab's label quality (normalised margin) where installed, else by the score."""
    labels = np.asarray(labels)
    score = 1.0 - probabilities[np.arange(len(labels)), labels]
    suggested = probabilities.argmax(axis=1)
    flagged = (suggested != labels) & (score >= min_score)
    try:
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        order, method = np.argsort(-score, kind="stable"), "the score (cleanlab not installed)"
    else:
        quality = get_label_quality_scores(labels, probabilities, method="normalized_margin")
        order, method = np.argsort(quality, kind="stable"), "cleanlab"
    return LabelVerdict(flagged, score, suggested, order, method)


def outlier_scores(features: np.ndarray, *, neighbours: int = NEIGHBOURS, block: int = BLOCK) -> np.ndarray:
    """(N,) mean cosine distance to the `neighbours` nearest other images: high for an image like no other."""
    vectors = np.asarray(features, dtype=np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    k = max(1, min(neighbours, len(vectors) - 1))
    scores = np.zeros(len(vectors))
    for start in range(0, len(vectors), block):
        similarity = vectors[start : start + block] @ vectors.T  # (block, N)
        rows = np.arange(similarity.shape[0])
        similarity[rows, start + rows] = -np.inf  # not its own neighbour
        nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
        scores[start : start + block] = 1.0 - nearest.mean(axis=1)
    return scores


def outlier_flags(scores: np.ndarray, *, spread: float = OUTLIER_SPREAD) -> np.ndarray:
    """(N,) bool: scores far above the rest (median + `spread` median absolute deviations)."""
    median = np.median(scores)
    deviation = np.median(np.abs(scores - median)) or 1e-6
    return scores > median + spread * deviation
