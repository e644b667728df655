import numpy as np
import pytest

from foldertune.analysis.metrics import classification_summary, confusion, per_class_table, topk_accuracy

TARGETS = np.array([0, 0, 1, 1, 2, 2])
PREDICTIONS = np.array([0, 1, 1, 1, 2, 0])


def scores_for(predictions, classes=3):
    scores = np.full((len(predictions), classes), 0.1)
    scores[np.arange(len(predictions)), predictions] = 0.9
    return scores


def test_summary_matches_hand_counts():
    summary = classification_summary(TARGETS, scores_for(PREDICTIONS))
    assert summary["accuracy"] == pytest.approx(4 / 6)
    # precision: class0 1/2, class1 2/3, class2 1/1; recall: 1/2, 2/2, 1/2
    assert summary["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert summary["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    f1 = [2 * p * r / (p + r) for p, r in ((1 / 2, 1 / 2), (2 / 3, 1), (1, 1 / 2))]
    assert summary["f1"] == pytest.approx(sum(f1) / 3)
    assert "top5_accuracy" not in summary


def test_per_class_table_and_confusion():
    rows = per_class_table(TARGETS, PREDICTIONS, ["a", "b", "c"])
    assert [r["support"] for r in rows] == [2, 2, 2] and rows[1]["recall"] == 1.0
    assert confusion(TARGETS, PREDICTIONS, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_topk():
    scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    assert topk_accuracy(np.array([1, 0]), scores, 1) == 0.0
    assert topk_accuracy(np.array([1, 0]), scores, 2) == 0.5
    assert topk_accuracy(np.array([1, 0]), scores, 3) == 1.0
    many = classification_summary(np.arange(6), np.eye(6)[::-1] + np.eye(6) * 0.5)
    assert many["accuracy"] == 0.0 and many["top5_accuracy"] == 1.0
