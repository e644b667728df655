"""Calibration: one temperature that makes the network's probabilities honest, and how far they were from it.

    t = fit_temperature(logits, targets)               # 1.7: softmax(logits / 1.7) minimises the log loss
    expected_calibration_error(softmax(logits / t, axis=1), targets)   # 0.04 (0.11 at t = 1)
    reliability_bins(probabilities, targets)           # per confidence bin: images, mean confidence, accuracy

A network trained by cross-entropy is usually over-confident on images it has not seen. Temperature scaling
(Guo et al., 2017) divides the logits by one number T fitted on held-out images (the validation split after
training; the pooled out-of-fold logits with cross-validation): it changes the probabilities, never the ranking,
so accuracy stays the same. T is the most probable value given the images and a normal prior on log T around 0
(spread PRIOR_SCALE): on a few images the prior keeps T near 1, on many the images decide. On 5 or 10 images the
plain log-loss minimum made unseen images' log loss worse than no temperature at all in each of the six cases of
bench/trust_temperature.py (by 0.01-0.14); with the prior, on 5-20 images, it was never more than 0.005 worse than
none and up to 0.04 better; on 160 images the two fits agree within 0.001. The search is on log T within
[1/MAX_TEMPERATURE, MAX_TEMPERATURE].
"""

from __future__ import annotations

import numpy as np

BINS = 15  # equal-width confidence bins of the expected calibration error and the reliability diagram
MAX_TEMPERATURE = 10.0
PRIOR_SCALE = 0.25  # the standard deviation of the prior on log T: T within 0.61-1.65 at two of them


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of (N, classes) logits divided by `temperature`."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature))


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the targets under softmax(logits / temperature)."""
    scaled = log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-scaled[np.arange(len(targets)), targets].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T that minimises the summed log loss of softmax(logits / T) on these images plus
    (log T)^2 / (2 PRIOR_SCALE^2), the prior's penalty (bounded search on log T); 1.0 when there are no images."""
    from scipy.optimize import minimize_scalar

    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    if len(targets) == 0:
        return 1.0

    def objective(log_t: float) -> float:
        return len(targets) * nll(logits, targets, np.exp(log_t)) + log_t**2 / (2 * PRIOR_SCALE**2)

    bound = np.log(MAX_TEMPERATURE)
    found = minimize_scalar(objective, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x)) if objective(found.x) <= objective(0.0) else 1.0


def reliability_bins(probabilities: np.ndarray, targets: np.ndarray, *, bins: int = BINS) -> list[dict]:
    """For each of `bins` equal-width bins of the top probability: its edges, images, mean confidence, accuracy."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(targets)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # (k/bins, (k+1)/bins]
    rows = []
    for k in range(bins):
        inside = which == k
        count = int(inside.sum())
        rows.append({"low": k / bins, "high": (k + 1) / bins, "images": count,
                     "confidence": float(confidence[inside].mean()) if count else None,
                     "accuracy": float(correct[inside].mean()) if count else None})  # fmt: skip
    return rows


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, *, bins: int = BINS) -> float:
    """The images' share-weighted mean gap between confidence and accuracy over the confidence bins."""
    rows = reliability_bins(probabilities, targets, bins=bins)
    total = sum(row["images"] for row in rows)
    if total == 0:
        return 0.0
    return float(sum(row["images"] * abs(row["accuracy"] - row["confidence"]) for row in rows if row["images"]) / total)


def calibration_summary(logits: np.ndarray, targets: np.ndarray, temperature: float) -> dict:
    """What metrics.json keeps: the temperature, the ECE after and before it, and both reliability tables."""
    before, after = softmax(logits), softmax(logits, temperature)
    return {
        "temperature": float(temperature),
        "ece": expected_calibration_error(after, targets),
        "ece_before": expected_calibration_error(before, targets),
        "nll": nll(logits, targets, temperature),
        "nll_before": nll(logits, targets),
        "bins": {"before": reliability_bins(before, targets), "after": reliability_bins(after, targets)},
    }
