"""What a prediction is, shared by the PyTorch and the ONNX classifiers (no torch import).

ranked(probabilities, classes, topk=3, path="a.jpg")   # Prediction(label='cat', probability=0.9, topk=[...])
pictures_from_array(frame)                             # an HxWx3 uint8 array -> a PIL image; NxHxWx3 -> a list
predict_input(inputs)                                  # what `predict` was given, checked (arrays as PIL images)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from foldertune.errors import UserError
from foldertune.notebook import card, escape

UNKNOWN = "unknown"  # the label below the confidence threshold (--min-confidence)
PREDICT_INPUTS = "a path, a folder, a PIL image, a uint8 numpy array (HxW, HxWxC or NxHxWxC) or a list of them"


@dataclass
class Prediction:
    label: str | None  # the most probable class; None when the image could not be read
    probability: float | None
    topk: list[tuple[str, float]] = field(default_factory=list)  # best first
    path: str | None = None
    error: str | None = None
    top_label: str | None = None  # the most probable class, also when `label` is 'unknown' (below --min-confidence)
    unknown_score: float | None = None  # higher = less like the training images (see inference/unknown.py)

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


def check_predict_options(
    *,
    topk: int,
    batch_size: int | None = None,
    min_confidence: float | None = None,
    classes: list[str] | None = None,
    flags: bool = False,
) -> None:
    """Refuse a topk or batch_size below 1 or a min_confidence outside [0, 1), or given to a model with a class
    named 'unknown' (`classes`), naming the keyword (the classifiers' methods) or, with `flags`, the flag (the CLI,
    before loading a classifier)."""
    number = isinstance(min_confidence, (int, float)) and not isinstance(min_confidence, bool)
    flag = "--min-confidence" if flags else "min_confidence="
    if min_confidence is not None and not (number and 0 <= min_confidence < 1):
        raise UserError(
            f"{flag} must be a probability from 0 up to (not including) 1, such as 0.6; got "
            f"{f'{min_confidence:g}' if number else repr(min_confidence)}."
        )
    if min_confidence is not None and classes is not None and UNKNOWN in classes:
        raise UserError(
            f"this model has a class named '{UNKNOWN}', which {flag} would mix with its own answer; leave {flag} out, "
            "or rename that class folder and train again."
        )
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise UserError(f"{'--topk' if flags else 'topk='} must be a whole number of at least 1; got {topk!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise UserError(
            f"{'--batch-size' if flags else 'batch_size='} must be a whole number of at least 1; got {batch_size!r}."
        )


def ranked(
    probabilities: np.ndarray,
    classes: list[str],
    *,
    topk: int,
    path: str | None,
    min_confidence: float | None = None,
    unknown_score: float | None = None,
) -> Prediction:
    """The `topk` most probable classes of one image's probabilities, best first; labelled 'unknown' when the top
    probability is below `min_confidence`."""
    order = np.argsort(-probabilities, kind="stable")[: max(1, topk)]
    best = [(classes[i], float(probabilities[i])) for i in order]
    below = min_confidence is not None and best[0][1] < min_confidence
    score = None if unknown_score is None else float(unknown_score)
    return Prediction(UNKNOWN if below else best[0][0], best[0][1], best, path, top_label=best[0][0],
                      unknown_score=score)  # fmt: skip


def predict_input(inputs):
    """What a classifier's `predict` was given, checked: a numpy array as a PIL image (or a list of them); a path,
    a PIL image or an iterable of inputs as it is; a UserError for anything else."""
    if isinstance(inputs, np.ndarray):
        return pictures_from_array(inputs)
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        raise UserError(f"predict takes {PREDICT_INPUTS}, not the bytes of a file: open them first, for example "
                        "with PIL.Image.open(io.BytesIO(data)).")  # fmt: skip
    if isinstance(inputs, Image.Image) and 0 in inputs.size:
        raise UserError(f"predict needs an image of at least 1x1 pixels; got a PIL image of {inputs.size[0]}x"
                        f"{inputs.size[1]}.")  # fmt: skip
    if isinstance(inputs, (str, os.PathLike, Image.Image)):
        return inputs
    if type(inputs).__module__.startswith("torch"):  # a tensor: its layout and scale are the caller's to say
        raise UserError(f"predict takes {PREDICT_INPUTS}, not a torch tensor: pass the picture itself, which "
                        "predict preprocesses as the model was trained.")  # fmt: skip
    if isinstance(inputs, Iterable) and not isinstance(inputs, dict):  # a list of inputs, each checked in turn
        return inputs
    raise UserError(f"predict takes {PREDICT_INPUTS}; got {type(inputs).__name__}.")


def pictures_from_array(array: np.ndarray) -> Image.Image | list[Image.Image]:
    """A numpy picture as PIL: HxW or HxWxC uint8 (C = 1, 3 or 4, RGB order) is one image, NxHxWxC a list."""
    if array.dtype != np.uint8:
        raise UserError(
            f"an image array must hold uint8 values 0-255 (got {array.dtype}); convert it, for example with "
            "(array * 255).clip(0, 255).astype('uint8') for floats in 0-1."
        )
    if 0 in array.shape:
        raise UserError(f"an image array must hold at least one image of 1x1 pixels; got shape {array.shape}.")
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        raise UserError(f"an image array must be height x width x channels; got {array.shape}: transpose it to HxWxC.")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4)):
        return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    if array.ndim == 4 and array.shape[-1] in (1, 3, 4):
        return [pictures_from_array(picture) for picture in array]
    raise UserError(
        f"an image array must be HxW, HxWx3 (one image) or NxHxWx3 (a batch), uint8; got shape {array.shape}."
    )
