"""Cross-validation figures: each metric's mean and spread over the folds, and the pooled out-of-fold metrics.

    summary = cv_summary(per_fold, pooled)    # per_fold: [{"val": overall, "test": overall}, ...] (evaluate's names)
    summary["val"]["accuracy"]                # {"mean", "std", "min", "max", "folds": [...]}
    summary["pooled"]["overall"]["accuracy"]  # every image once, predicted by the fold's model that never saw it

The spread is the sample standard deviation over the folds (ddof=1), with the smallest and largest fold. The pooled
figures are `evaluation_report`'s on all out-of-fold predictions together, so their names are evaluate's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldertune.analysis.metrics import confusion, evaluation_report

METRICS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "loss")  # summarised


@dataclass
class OutOfFold:
    """Every image's prediction by the fold's model that held it out, in one order."""

    paths: list[str]
    folds: np.ndarray  # (N,) fold number, 1 to K
    targets: np.ndarray  # (N,) true class index
    probabilities: np.ndarray  # (N, classes) float32
    classes: list[str]


def spread(values: list[float]) -> dict[str, object]:
    """Mean, sample standard deviation, smallest and largest of one metric over the folds, and the values."""
    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
        "min": float(array.min()),
        "max": float(array.max()),
        "folds": [float(value) for value in array],
    }


def cv_summary(per_fold: list[dict[str, dict]], pooled: OutOfFold) -> dict:
    """cv.json's numbers: for each split the folds were evaluated on, each metric's spread over the folds; then the
    pooled out-of-fold evaluation (overall, per class, confusion matrix with rows = true class, most-confused)."""
    summary: dict = {"folds": len(per_fold)}
    for split in ("val", "test"):
        evaluated = [fold[split] for fold in per_fold if split in fold]
        if len(evaluated) == len(per_fold):
            summary[split] = {name: spread([overall[name] for overall in evaluated]) for name in METRICS}
            summary[split]["images"] = [int(overall["images"]) for overall in evaluated]
    report = evaluation_report(pooled.targets, pooled.probabilities, pooled.classes)
    predictions = pooled.probabilities.argmax(axis=1)
    summary["pooled"] = {
        "overall": report["overall"],
        "per_class": report["per_class"],
        "classes": pooled.classes,
        "confusion_matrix": confusion(pooled.targets, predictions, len(pooled.classes)).tolist(),
        "confused_pairs": report["confused_pairs"],
    }
    return summary
