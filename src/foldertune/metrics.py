"""Classification metrics as pure functions of targets and scores (scikit-learn does the counting).

    summary = classification_summary(targets, logits)     # {'accuracy': 0.93, 'precision': ..., 'top5_accuracy': ...}
    rows = per_class_table(targets, logits.argmax(1), classes)

Macro averages are taken over the classes that occur in the targets or the predictions (scikit-learn's default),
so a class absent from a small validation split does not count as a zero.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def topk_accuracy(targets: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of samples whose target is among the k highest scores."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def classification_summary(targets: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """accuracy, macro precision / recall / f1 and, with more than five classes, top-5 accuracy."""
    predictions = scores.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(targets, predictions, average="macro", zero_division=0)
    summary = {
        "accuracy": float(accuracy_score(targets, predictions)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
    if scores.shape[1] > 5:
        summary["top5_accuracy"] = topk_accuracy(targets, scores, 5)
    return summary


def per_class_table(targets: np.ndarray, predictions: np.ndarray, classes: list[str]) -> list[dict[str, object]]:
    """One row per class: precision, recall, f1, support (number of true samples)."""
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=labels, average=None, zero_division=0
    )
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]


def confusion(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    return confusion_matrix(targets, predictions, labels=list(range(num_classes)))
