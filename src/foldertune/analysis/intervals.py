"""How far a score measured on few images can be trusted: 95% intervals and a paired test of two models.

    wilson_interval(26, 28)                          # (0.774, 0.980): accuracy 26/28 = 0.929
    bootstrap_intervals(targets, predictions)        # {'balanced_accuracy': (0.80, 1.0), 'macro_f1': (0.78, 0.98)}
    mcnemar(correct_a, correct_b)                    # {'a_only': 3, 'b_only': 0, 'p_value': 0.25, 'differ': False}

Accuracy is a count of successes, so its interval is Wilson's score interval (good at 28 images and at 0 or 100%,
where the normal approximation is not). Balanced accuracy and macro F1 are not counts: their intervals come from a
seeded bootstrap over the evaluated images (percentiles of the score on images drawn with replacement), computed for
every resample at once from per-class counts. Two models evaluated on the same images are compared image by image
with McNemar's exact test: only the images one gets right and the other wrong say anything about which is better.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile: two-sided 95%
RESAMPLES = 2000  # bootstrap resamples: the bounds move by about 0.005 between seeds at 28 images
DRAWS_AT_ONCE = 2_000_000  # image indices held at once (16 MB): large evaluations go in chunks
ALPHA = 0.05  # the level at which McNemar's test says two models differ


def wilson_interval(correct: int, total: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for `correct` successes out of `total`; (0, 1) when there is nothing to count."""
    if total <= 0:
        return 0.0, 1.0
    share = correct / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    low = 0.0 if correct == 0 else max(0.0, float(centre - half))  # exactly 0 and 1 at the ends, not 1e-16 away
    high = 1.0 if correct == total else min(1.0, float(centre + half))
    return low, high


def accuracy_interval(accuracy: float, total: int) -> tuple[float, float]:
    """Wilson's interval for an accuracy measured on `total` images."""
    return wilson_interval(round(accuracy * total), total)


def bootstrap_intervals(
    targets: np.ndarray, predictions: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of balanced accuracy and macro F1, from `resamples` draws of the images with
    replacement. As in metrics.py, each resample averages over the classes present in its own targets."""
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    n = len(targets)
    if n == 0:
        return {"balanced_accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0)}
    classes = int(max(targets.max(), predictions.max())) + 1
    rng = np.random.default_rng(seed)
    scores: dict[str, list[np.ndarray]] = {"balanced_accuracy": [], "macro_f1": []}
    chunk = max(1, DRAWS_AT_ONCE // n)
    for start in range(0, resamples, chunk):
        drawn = rng.integers(0, n, size=(min(chunk, resamples - start), n))  # (resamples, n) image indices
        for name, values in _resampled_scores(targets, predictions, drawn, classes).items():
            scores[name].append(values)
    return {
        name: (float(np.percentile(np.concatenate(values), 2.5)), float(np.percentile(np.concatenate(values), 97.5)))
        for name, values in scores.items()
    }


def _resampled_scores(targets: np.ndarray, predictions: np.ndarray, drawn: np.ndarray, classes: int) -> dict:
    """Balanced accuracy and macro F1 of each row of `drawn` (image indices), from per-class counts."""
    rows = len(drawn)
    offset = np.arange(rows)[:, None] * classes  # one block of `classes` counters per resample

    def counts(values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        keys = (offset + values[drawn]).ravel()
        weights = None if where is None else where[drawn].ravel().astype(float)
        return np.bincount(keys, weights=weights, minlength=rows * classes).reshape(rows, classes)

    support = counts(targets)  # true images of each class
    predicted = counts(predictions)
    hits = counts(targets, where=targets == predictions)
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros(hits.shape), where=present)
    f1 = np.divide(2 * hits, support + predicted, out=np.zeros(hits.shape), where=present)
    return {
        "balanced_accuracy": (recall * present).sum(axis=1) / present.sum(axis=1),
        "macro_f1": (f1 * present).sum(axis=1) / present.sum(axis=1),
    }


def interval_keys(targets: np.ndarray, predictions: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """`accuracy_low` / `accuracy_high`, `balanced_accuracy_low` / `_high`, `macro_f1_low` / `_high`: the 95%
    intervals that metrics.json keeps beside each score."""
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    low, high = wilson_interval(int((targets == predictions).sum()), len(targets))
    keys = {"accuracy_low": low, "accuracy_high": high}
    for name, (low, high) in bootstrap_intervals(targets, predictions, seed=seed).items():
        keys[f"{name}_low"], keys[f"{name}_high"] = low, high
    return keys


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, object]:
    """McNemar's exact test of two models on the same images (boolean arrays, image by image): the images only A
    gets right, those only B gets right, the two-sided p-value, and whether they differ at the 5% level."""
    from scipy.stats import binomtest

    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    a_only, b_only = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(binomtest(min(a_only, b_only), discordant, 0.5).pvalue)
    return {"images": len(correct_a), "a_only": a_only, "b_only": b_only, "p_value": p_value,
            "differ": p_value < ALPHA}  # fmt: skip


def describe_interval(accuracy: float, low: float, high: float, images: int) -> str:
    """'0.929 (95% interval 0.77-0.98, 28 images)': how a score and its interval are printed."""
    return f"{accuracy:.3f} (95% interval {low:.2f}-{high:.2f}, {images} images)"


def interval_sentence(accuracy: float, low: float, high: float, images: int, *, split: str = "validation") -> str:
    """One plain sentence on what an accuracy interval means for this many images."""
    return (
        f"With {images} {split} images, one image is {100 / max(images, 1):.1f} points of accuracy: the measured "
        f"{accuracy:.3f} fits a true accuracy anywhere from {low:.2f} to {high:.2f} (95% interval), so runs whose "
        "scores differ by less than that may not differ at all; more images narrow it."
    )
