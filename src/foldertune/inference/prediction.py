"""What a prediction is, shared by the PyTorch and the ONNX classifiers (no torch import).

ranked(probabilities, classes, topk=3, path="a.jpg")   # Prediction(label='cat', probability=0.9, topk=[...])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foldertune.errors import UserError
from foldertune.notebook import card, escape


@dataclass
class Prediction:
    label: str | None  # the most probable class; None when the image could not be read
    probability: float | None
    topk: list[tuple[str, float]] = field(default_factory=list)  # best first
    path: str | None = None
    error: str | None = None

    def _repr_html_(self) -> str:
        """In a notebook: the top classes with probability bars (or why the image could not be read)."""
        name = escape(Path(self.path).name) if self.path else "image"
        if self.error:
            return card(name, f'<span style="color:#b00">{escape(self.error)}</span>')
        rows = "".join(
            f'<tr><td style="padding:1px 8px">{escape(label)}</td><td style="width:200px"><div style="background:#36c;'
            f'height:10px;width:{100 * p:.1f}%"></div></td><td style="text-align:right">{100 * p:.1f}%</td></tr>'
            for label, p in self.topk
        )
        return card(f"{name}: {escape(self.label)} ({100 * self.probability:.1f}%)", f"<table>{rows}</table>")


def check_predict_options(*, topk: int, batch_size: int | None = None) -> None:
    """Refuse a --topk or --batch-size below 1, naming the flag (both classifiers; the CLI before loading either)."""
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise UserError(f"--topk must be at least 1; got {topk}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise UserError(f"--batch-size must be at least 1; got {batch_size}.")


def ranked(probabilities: np.ndarray, classes: list[str], *, topk: int, path: str | None) -> Prediction:
    """The `topk` most probable classes of one image's probabilities, best first."""
    order = np.argsort(-probabilities, kind="stable")[: max(1, topk)]
    best = [(classes[i], float(probabilities[i])) for i in order]
    return Prediction(best[0][0], best[0][1], best, path)
