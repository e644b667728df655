"""Out-of-fold probabilities, label-issue ranking and outlier scores on small synthetic features."""

import numpy as np
import pytest

from foldertune.analysis.label_scores import (
    STRENGTHS,
    estimated_label_errors,
    out_of_fold_probabilities,
    outlier_flags,
    outlier_scores,
    rank_label_issues,
)


def clusters(seed=0, per_class=20, classes=3, width=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(classes, width))
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(size=(len(labels), width)), labels


def test_copies_share_a_fold_and_a_swapped_label_is_found():
    features, labels = clusters()
    features = np.vstack([features, features[:1]])  # image 60 is an exact copy of image 0
    labels = np.append(labels, 0)
    labels[5] = 2  # a class-0 image filed under class 2
    together = np.arange(len(labels))
    together[60] = 0
    probabilities = out_of_fold_probabilities(features, labels, together, folds=5, seed=0).probabilities
    assert np.allclose(probabilities.sum(axis=1), 1)
    assert np.array_equal(probabilities[0], probabilities[60])  # held out together: predicted by the same head
    apart = out_of_fold_probabilities(features, labels, np.arange(len(labels)), folds=5, seed=0).probabilities
    assert not np.array_equal(apart[0], apart[60])  # in different folds, two heads judge them
    verdict = rank_label_issues(labels, probabilities)
    assert np.flatnonzero(verdict.flagged).tolist() == [5]
    assert verdict.suggested[5] == 0 and verdict.order[0] == 5 and verdict.score[5] >= 0.8


def test_the_number_of_label_errors_is_estimated_as_cleanlab_counts_it():
    features, labels = clusters(seed=2, per_class=30, classes=4)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(labels), 12, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 4, size=12)) % 4  # 10% filed under another class
    fit = out_of_fold_probabilities(features, labels, np.arange(len(labels)))
    assert fit.c in STRENGTHS
    estimated = estimated_label_errors(labels, fit.probabilities)
    verdict = rank_label_issues(labels, fit.probabilities)
    assert verdict.estimated == estimated and verdict.flagged.sum() <= np.ceil(estimated * 1.1)
    assert set(flipped.tolist()) == set(np.flatnonzero(verdict.flagged).tolist())  # well-separated clusters
    cleanlab = pytest.importorskip("cleanlab.count")
    assert estimated == cleanlab.num_label_issues(labels, fit.probabilities)


def test_an_image_unlike_the_rest_has_the_highest_outlier_score():
    features, _ = clusters(seed=1)
    features = np.vstack([features, np.tile([30.0, -30.0], features.shape[1] // 2)])
    scores = outlier_scores(features, block=7)  # blocks of 7 rows give the same scores as one block
    assert np.allclose(scores, outlier_scores(features))
    assert scores.argmax() == len(features) - 1
    assert np.flatnonzero(outlier_flags(scores)).tolist() == [len(features) - 1]
