"""Which labels look wrong and which images look like no class, from frozen-backbone features alone.

    fit = out_of_fold_probabilities(features, labels, groups, folds=5, seed=0)  # .probabilities (N, classes), .c
    verdict = rank_label_issues(labels, fit.probabilities)   # .flagged (N,) bool, .score (N,) 0..1, .suggested (N,)
    outliers = outlier_scores(features)                      # (N,) mean cosine distance to the nearest neighbours

Out-of-fold: each image's probabilities come from a linear head (multinomial logistic regression on standardised
features, fitted by L-BFGS in torch on one thread) trained on the other folds, so no image votes for its own label;
folds are stratified by class, and the members of one group (exact or near copies) share a fold, or a copy would
vouch for its twin. The strength of the heads' penalty is the one of STRENGTHS whose out-of-fold probabilities have
the lowest log loss: how far probabilities can be trusted depends on the data (a few hundred photos want a weaker
penalty than thousands of look-alike images), and the cut below reads them as they are.

How many labels are wrong is estimated as confident learning does (Northcutt et al., cleanlab's
`num_label_issues`): each class's threshold is the mean probability of that class among the images filed under
it; an image counts as an error when a class other than its own reaches its threshold (the likeliest of those that
do). That many images and a tenth more (MARGIN), those with the lowest probability of their own class
(self-confidence), are flagged, if another class is likeliest and their score (1 - the probability of their own
class) reaches MIN_LABEL_SCORE.
Measured with 5-20% of the labels flipped on the sample and on Fashion-MNIST (BENCHMARKS.md): a fixed cut on the
score flagged up to twice as many images as were flipped on Fashion-MNIST, where the classes overlap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

FOLDS = 5  # linear heads trained per label check; each sees 80% of the images
STRENGTHS = (
    0.001,
    0.003,
    0.01,
    0.03,
    0.1,
    0.3,
    1.0,
)  # C of the heads' penalty, as scikit-learn's LogisticRegression has it (the
# summed log loss times C plus half the squared weights); tried from the strongest penalty up, until the log loss
# rises. Measured: 3,000 Fashion-MNIST images pick 0.001 or 0.003, the sample's 138 photos 0.003 to 0.1
ITERATIONS = 100  # L-BFGS iterations per head at most (the penalty keeps the problem well conditioned)
HEADS = ["multinomial logistic regression, L-BFGS in float32", list(STRENGTHS), ITERATIONS]  # names the
# method in the cache key of out-of-fold probabilities: change it when they would come out differently
MIN_LABEL_SCORE = 0.5  # a suspect's own class has at most half the probability, and another class is likelier
MARGIN = 1.1  # images looked at per label error counted: with 10% of the labels flipped, eight draws on the sample
# and three on Fashion-MNIST, 1.0 found 0.78 / 0.92 of the flips at precision 0.70 / 0.68, 1.1 found 0.82 / 0.94 at
# 0.67 / 0.64, 1.2 0.82 / 0.96 at 0.61 / 0.59: a missed wrong label costs more than a second look at a right one
NEIGHBOURS = 10  # the outlier score averages the distance to this many nearest images
OUTLIER_SPREAD = 4.0  # an outlier is this many median absolute deviations above the median score (a black
# frame and a screenshot among 80 sample photos measured 6.1 and 4.5; the photos at most 4.5, a black slate)
BLOCK = 1024  # rows of the similarity matrix held at once


@dataclass(frozen=True)
class OutOfFold:
    probabilities: np.ndarray  # (N, classes): each row from heads that never saw that image nor its copies
    c: float  # the penalty strength chosen (one of STRENGTHS)
    log_loss: float  # mean out-of-fold log loss of the given labels at that strength


@dataclass(frozen=True)
class LabelVerdict:
    flagged: np.ndarray  # (N,) bool: a likely label error
    score: np.ndarray  # (N,) float: 1 - out-of-fold probability of the given class
    suggested: np.ndarray  # (N,) int: the most probable class out of fold
    order: np.ndarray  # (N,) int: image indices, the likeliest label error first (lowest self-confidence)
    estimated: int  # how many labels look wrong by the confident-joint count (before the score cut)
    method: str  # how they were counted, for the report


def fold_count(folds: int, labels: np.ndarray, groups: np.ndarray) -> int:
    """The folds the heads use: `folds`, but no more than the smallest class's images or the copy groups, and 2 at
    least."""
    labels = np.asarray(labels)
    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    return max(2, min(folds, smallest, len(np.unique(groups))))


def out_of_fold_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    strengths: tuple[float, ...] = STRENGTHS,
) -> OutOfFold:
    """Probabilities for every image from linear heads that never saw it nor its copies, at the penalty strength
    (of `strengths`, tried in order while the out-of-fold log loss falls) that predicts the given labels best."""
    import torch
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    classes = int(labels.max()) + 1
    folds = fold_count(folds, labels, groups)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class smaller than the folds: harmless here
        splits = list(splitter.split(features, labels, groups))
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    scales = [(x[train].mean(0), x[train].std(0) + 1e-6) for train, _ in splits]  # standardised per fold
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # products this small wait on each other across threads more than they compute
    try:  # (measured: 5 heads on 2,400 Fashion-MNIST images, 2 shared cores: 76 s on 2 threads, 8 s on one)
        best: OutOfFold | None = None
        weights: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(splits)
        for c in strengths:
            probabilities = np.zeros((len(labels), classes))
            for k, ((train, held_out), (mean, std)) in enumerate(zip(splits, scales, strict=True)):
                weights[k] = _fit_head((x[train] - mean) / std, y[train], classes, c, start=weights[k])
                w, b = weights[k]
                probabilities[held_out] = torch.softmax((x[held_out] - mean) / std @ w + b, dim=1).numpy()
            log_loss = float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1)).mean())
            if best is not None and log_loss >= best.log_loss:
                break  # the log loss rose: weaker penalties only fit the noise better
            best = OutOfFold(probabilities, c, log_loss)
    finally:
        torch.set_num_threads(threads)
    return best


def _fit_head(x, y, classes: int, c: float, *, start=None, iterations: int = ITERATIONS):
    """(weights, bias) of a multinomial logistic regression minimising C * summed log loss + |weights|^2 / 2 (as
    scikit-learn's lbfgs solver does), from `start` (the previous strength's solution) or zeros."""
    import torch

    if start is None:
        w = torch.zeros(x.shape[1], classes, dtype=x.dtype)
        b = torch.zeros(classes, dtype=x.dtype)
    else:
        w, b = (t.detach().clone() for t in start)
    w.requires_grad_(True)
    b.requires_grad_(True)
    penalty = 1.0 / (2.0 * c * len(y))  # the same objective divided by C * N: a mean loss
    optimiser = torch.optim.LBFGS([w, b], max_iter=iterations, history_size=20, tolerance_grad=1e-5,
                                  tolerance_change=1e-9, line_search_fn="strong_wolfe")  # fmt: skip

    def loss():
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ w + b, y) + penalty * (w * w).sum()
        value.backward()
        return value

    optimiser.step(loss)
    return w.detach(), b.detach()


def estimated_label_errors(labels: np.ndarray, probabilities: np.ndarray) -> int:
    """How many labels look wrong by confident learning's count: the off-diagonal of the confident joint, as
    cleanlab's `num_label_issues(estimation_method="off_diagonal")` counts it."""
    labels = np.asarray(labels)
    classes = probabilities.shape[1]
    filed = np.bincount(labels, minlength=classes)
    sums = np.zeros(classes)
    np.add.at(sums, labels, probabilities[np.arange(len(labels)), labels])
    thresholds = np.where(filed > 0, sums / np.maximum(filed, 1), 2.0)  # per class: the mean probability of the
    thresholds = np.maximum(thresholds, 2e-6)  # class among the images filed under it (an empty class: unreachable)
    confident = probabilities >= thresholds - 1e-6
    count = confident.sum(axis=1)
    guess = np.where(count > 1, probabilities.argmax(axis=1), confident.argmax(axis=1))
    own = probabilities[np.arange(len(labels)), labels] + 1e-6
    likeliest_elsewhere = probabilities.max(axis=1) > own  # cleanlab drops the images whose own class is likeliest
    return int(((count > 0) & (guess != labels) & likeliest_elsewhere).sum())


def rank_label_issues(
    labels: np.ndarray, probabilities: np.ndarray, *, min_score: float = MIN_LABEL_SCORE
) -> LabelVerdict:
    """Likely label errors: the estimated number of them (times MARGIN) with the lowest probability of their own
    class, if another class is the most probable and their own has at most 1 - `min_score`. Counted by cleanlab where
    installed."""
    labels = np.asarray(labels)
    score = 1.0 - probabilities[np.arange(len(labels)), labels]
    suggested = probabilities.argmax(axis=1)
    try:
        from cleanlab.count import num_label_issues
    except ImportError:
        estimated, method = estimated_label_errors(labels, probabilities), "the confident joint"
    else:
        estimated, method = int(num_label_issues(labels, probabilities)), "cleanlab's confident joint"
    order = np.argsort(-score, kind="stable")  # lowest self-confidence first
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[order[: int(np.ceil(estimated * MARGIN - 1e-9))]] = True
    flagged &= (suggested != labels) & (score >= min_score)
    return LabelVerdict(flagged, score, suggested, order, estimated, method)


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
