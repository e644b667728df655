"""What a prediction is, shared by the PyTorch and the ONNX classifiers (no torch import).

ranked(probabilities, classes, topk=3, path="a.jpg")   # Prediction(label='cat', probability=0.9, topk=[...])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Prediction:
    label: str | None  # the most probable class; None when the image could not be read
    probability: float | None
    topk: list[tuple[str, float]] = field(default_factory=list)  # best first
    path: str | None = None
    error: str | None = None


def ranked(probabilities: np.ndarray, classes: list[str], *, topk: int, path: str | None) -> Prediction:
    """The `topk` most probable classes of one image's probabilities, best first."""
    order = np.argsort(-probabilities, kind="stable")[: max(1, topk)]
    best = [(classes[i], float(probabilities[i])) for i in order]
    return Prediction(best[0][0], best[0][1], best, path)
