"""Classification metrics as pure functions of targets and scores (scikit-learn does the counting; imported
where used, as it takes a second or two to import and training's first step does not need it).

    summary = classification_summary(targets, logits)     # {'accuracy': 0.93, 'precision': ..., 'top5_accuracy': ...}
    rows = per_class_table(targets, logits.argmax(1), classes)

Macro and weighted averages are taken over the classes that occur in the targets: a class absent from a small
validation split counts neither as a zero nor as a perfect score (wrong predictions of it still lower the
recall of the classes they were taken from). The evaluation report keeps a 95% interval beside accuracy, balanced
accuracy and macro F1 (intervals.py). Per-class AP and ROC AUC are left empty for a class that is
absent or that makes up the whole split, where they mean nothing.
"""

from __future__ import annotations

import numpy as np

from foldertune.analysis.intervals import interval_keys


def topk_accuracy(targets: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of samples whose target is among the k highest scores."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def classification_summary(targets: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """accuracy, macro precision / recall / f1, balanced accuracy (the macro recall) and, with more than five classes,
    top-5 accuracy."""
    from sklearn.metrics import accuracy_score

    predictions = scores.argmax(axis=1)
    precision, recall, f1 = averages(targets, predictions, "macro")
    summary = {
        "accuracy": float(accuracy_score(targets, predictions)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "balanced_accuracy": float(recall),
    }
    if scores.shape[1] > 5:
        summary["top5_accuracy"] = topk_accuracy(targets, scores, 5)
    return summary


def averages(targets: np.ndarray, predictions: np.ndarray, average: str) -> tuple[float, float, float]:
    """(precision, recall, f1) averaged over the classes present in the targets: "macro" or "weighted"."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(
        targets, predictions, labels=np.unique(targets), average=average, zero_division=0
    )
    return float(precision), float(recall), float(f1)


def per_class_table(targets: np.ndarray, predictions: np.ndarray, classes: list[str]) -> list[dict[str, object]]:
    """One row per class: precision, recall, f1, support (number of true samples)."""
    from sklearn.metrics import precision_recall_fscore_support

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
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(targets, predictions, labels=list(range(num_classes)))


def sample_losses(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Cross-entropy of each sample: -log p(true class), floored so that a zero probability stays finite."""
    return -np.log(np.clip(probabilities[np.arange(len(targets)), targets], 1e-12, 1.0))


def evaluation_report(targets: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Everything `foldertune evaluate` reports: overall figures, per-class table and most-confused pairs."""
    from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

    predictions = probabilities.argmax(axis=1)
    overall: dict[str, float] = {
        "images": len(targets),
        "accuracy": float(accuracy_score(targets, predictions)),
        "balanced_accuracy": averages(targets, predictions, "macro")[1],  # mean recall of the classes present
        "loss": float(sample_losses(targets, probabilities).mean()),
    }
    for k in (3, 5):
        if len(classes) > k:
            overall[f"top{k}_accuracy"] = topk_accuracy(targets, probabilities, k)
    for average in ("macro", "weighted"):
        precision, recall, f1 = averages(targets, predictions, average)
        overall.update({f"{average}_precision": float(precision), f"{average}_recall": float(recall),
                        f"{average}_f1": float(f1)})  # fmt: skip
    overall.update(interval_keys(targets, predictions))  # 95% intervals: accuracy_low, accuracy_high, ...
    rows = per_class_table(targets, predictions, classes)
    for index, row in enumerate(rows):
        truth = targets == index
        defined = 0 < truth.sum() < len(truth)  # both kinds of example are needed to rank them
        row["average_precision"] = float(average_precision_score(truth, probabilities[:, index])) if defined else None
        row["roc_auc"] = float(roc_auc_score(truth, probabilities[:, index])) if defined else None
    for key in ("average_precision", "roc_auc"):
        defined = [row[key] for row in rows if row[key] is not None]
        overall[f"macro_{key}"] = float(np.mean(defined)) if defined else None
    return {"overall": overall, "per_class": rows, "confused_pairs": confused_pairs(targets, predictions, classes)}


def confused_pairs(targets: np.ndarray, predictions: np.ndarray, classes: list[str], limit: int = 20) -> list[dict]:
    """The most frequent (true, predicted) mistakes, with their share of the true class's images."""
    matrix = confusion(targets, predictions, len(classes))
    np.fill_diagonal(matrix, 0)
    order = np.argsort(-matrix, axis=None, kind="stable")[:limit]
    support = np.bincount(targets, minlength=len(classes))
    pairs = []
    for flat in order:
        true, predicted = divmod(int(flat), len(classes))
        if matrix[true, predicted] == 0:
            break
        count = int(matrix[true, predicted])
        pairs.append({"true": classes[true], "predicted": classes[predicted], "count": count,
                      "share_of_true": count / int(support[true])})  # fmt: skip
    return pairs


TARGET_PRECISION = 0.95  # the accuracy of the answers given that --min-confidence is suggested for
COVERAGE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # the report's table


def coverage_report(targets: np.ndarray, probabilities: np.ndarray, *, target: float = TARGET_PRECISION) -> dict:
    """Accuracy against coverage when the answers below a confidence threshold are 'unknown': a row per threshold
    of COVERAGE_THRESHOLDS (coverage: share answered; accuracy: of those answered), and the lowest threshold among
    the images' own confidences whose answers reach `target` accuracy (None when none does)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    rows = [_answered(t, confidence, correct) for t in COVERAGE_THRESHOLDS]
    suggested = None
    for threshold in [
        0.0,
        *np.unique(confidence),
    ]:  # ascending: the first that reaches the target keeps the most answers
        row = _answered(float(threshold), confidence, correct)
        if row["accuracy"] is not None and row["accuracy"] >= target:
            suggested = max(0.0, round(float(threshold) - 5e-5, 4))  # rounded down: the image at it stays answered
            break
    return {"rows": rows, "target_precision": target, "suggested_min_confidence": suggested,
            "suggested_coverage": None if suggested is None else float((confidence >= suggested).mean())}  # fmt: skip


def _answered(threshold: float, confidence: np.ndarray, correct: np.ndarray) -> dict:
    answered = confidence >= threshold
    accuracy = float(correct[answered].mean()) if answered.any() else None
    return {"min_confidence": threshold, "coverage": float(answered.mean()), "accuracy": accuracy,
            "answered": int(answered.sum())}  # fmt: skip
