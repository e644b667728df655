"""Prediction without PyTorch: an exported ONNX model, ONNX Runtime, numpy and Pillow.

    clf = OnnxClassifier("runs/mobilenet_v2-finetune/export/model.onnx")   # classes, preprocessing, temperature
    clf.predict("photo.jpg")           # Prediction(label='fishes', probability=0.97, topk=[('fishes', 0.97), ...])
    clf.predict_files(["new_photos/"]) # every image below, unreadable files with `error` set

`eval_pixels` is foldertune's evaluation transform (torchvision's Resize of the shorter side + CenterCrop, on a PIL
image) written out in Pillow: the same sizes, the same rounding, the same resampling filter, so its pixels are
identical to what the checkpoint saw (a test compares them). Images are read by `open_image` (EXIF orientation,
any mode to RGB, JPEG draft decoding), the same function training uses. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from foldertune.data.images import ImageReadError, open_image, to_rgb
from foldertune.data.scan import list_image_files
from foldertune.errors import UserError, named_keywords
from foldertune.inference.prediction import Prediction, check_predict_options, predict_input, ranked
from foldertune.inference.unknown import energy_score
from foldertune.notebook import tqdm
from foldertune.preprocessing import Preprocessing, limit_aspect

METADATA_KEY = "foldertune"  # the ONNX metadata_props key holding the JSON description (classes, preprocessing, ...)
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "nearest": Image.Resampling.NEAREST}  # fmt: skip


def eval_pixels(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    """An RGB PIL image -> the (3, crop, crop) uint8 array of the evaluation transform."""
    image = limit_aspect(image)
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = pre.resize_size, int(pre.resize_size * long / short)
    size = (new_short, new_long) if width <= height else (new_long, new_short)
    if size != (width, height):
        image = image.resize(size, resample=RESAMPLING[pre.interpolation])
    top = round((image.height - pre.crop_size) / 2.0)
    left = round((image.width - pre.crop_size) / 2.0)
    image = image.crop((left, top, left + pre.crop_size, top + pre.crop_size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def normalize(pixels: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(N, 3, H, W) uint8 -> float32 scaled to 0..1, minus mean, over std: the network's input."""
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return (pixels.astype(np.float32) / 255.0 - mean) / std


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of (N, classes) logits divided by `temperature`."""
    logits = logits / temperature
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class OnnxClassifier:
    """An exported model with the class names and preprocessing stored in it, run by ONNX Runtime."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise UserError(
                "predicting with an .onnx file needs onnxruntime: pip install 'foldertune[onnx]' (or onnxruntime)."
            ) from None
        path = Path(path)
        if not path.is_file():
            raise UserError(f"'{path}' does not exist; pass a model.onnx written by foldertune export.")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for files that are not ONNX models
            raise UserError(f"'{path}' is not an ONNX model onnxruntime can load ({error}).") from None
        stored = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if stored is None:
            raise UserError(f"'{path}' has no foldertune metadata (class names, preprocessing); export it with "
                            "foldertune export.")  # fmt: skip
        self.metadata = json.loads(stored)
        self.classes: list[str] = list(self.metadata["classes"])
        self.preprocessing = Preprocessing.from_dict(self.metadata["preprocessing"])
        self.temperature = float(self.metadata.get("temperature", 1.0))  # exports before calibration: 1
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.batch_size = model_input.shape[0] if isinstance(model_input.shape[0], int) else None  # None: any

    @named_keywords
    def predict(self, inputs, *, topk: int = 5, min_confidence: float | None = None, tta: bool = False):
        """Predictions for a path, a PIL image, an HxWx3 uint8 array, or a list of them; a folder, a list or an
        NxHxWx3 array gives a list. Below `min_confidence` the label is 'unknown' (`top_label` keeps the class);
        `tta` averages the probabilities over the image and its mirror image."""
        inputs = predict_input(inputs)
        check_predict_options(topk=topk, min_confidence=min_confidence, classes=self.classes)
        options = {"topk": topk, "min_confidence": min_confidence, "tta": tta}
        if isinstance(inputs, Image.Image):
            return self._rank(eval_pixels(to_rgb(inputs), self.preprocessing)[None], **options)[0]
        if isinstance(inputs, (str, os.PathLike)):
            results = self.predict_files([inputs], progress=False, **options)
            return results if Path(inputs).is_dir() else results[0]
        items = list(inputs)
        if all(isinstance(item, Image.Image) for item in items):
            return self._rank(np.stack([eval_pixels(to_rgb(item), self.preprocessing) for item in items]), **options)
        if all(isinstance(item, (str, os.PathLike)) for item in items):
            return self.predict_files(items, progress=False, **options)
        results = []  # a mix (arrays among them): each as if given alone
        for item in items:
            result = self.predict(item, **options)
            results.extend(result if isinstance(result, list) else [result])
        return results

    def predict_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        topk: int = 5,
        batch_size: int = 32,
        progress: bool = True,
        min_confidence: float | None = None,
        tta: bool = False,
    ) -> list[Prediction]:
        """Files and folders (searched recursively), decoded in parallel threads, run in batches."""
        check_predict_options(topk=topk, batch_size=batch_size, min_confidence=min_confidence, classes=self.classes)
        files, _ = list_image_files(list(paths))
        results: list[Prediction] = []
        bar = tqdm(total=len(files), desc="predicting", unit="img", disable=None if progress else True, leave=False)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(files), batch_size):
                chunk = files[start : start + batch_size]
                loaded = list(pool.map(self._load, chunk))
                good = [pixels for pixels, _ in loaded if pixels is not None]
                answers = iter(self._rank(np.stack(good), topk, min_confidence, tta) if good else [])
                for path, (pixels, error) in zip(chunk, loaded, strict=True):
                    if pixels is None:
                        results.append(Prediction(None, None, [], str(path), error))
                    else:
                        results.append(replace(next(answers), path=str(path)))
                bar.update(len(chunk))
        bar.close()
        return results

    def probabilities(self, pixels: np.ndarray, *, tta: bool = False) -> np.ndarray:
        """(N, 3, H, W) uint8 from `eval_pixels` -> (N, classes) calibrated probabilities, softmax(logits / T) (with
        `tta`, the mean over the image and its mirror image)."""
        return self.outputs(pixels, tta=tta)[0]

    def outputs(self, pixels: np.ndarray, *, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and unknown scores of (N, 3, H, W) uint8 pixels; with `tta`, the means over the
        views (the image and its mirror image, as the PyTorch classifier's `tta_views`)."""
        probabilities, scores = [], []
        for view in (pixels, pixels[..., ::-1]) if tta else (pixels,):
            inputs = normalize(view, self.preprocessing)
            step = self.batch_size or len(inputs)
            runs = [
                self.session.run(None, {self.input_name: inputs[i : i + step]}) for i in range(0, len(inputs), step)
            ]
            logits = np.concatenate([outputs[0] for outputs in runs]).astype(np.float32)
            probabilities.append(softmax(logits, self.temperature))
            if len(runs[0]) > 1:  # exports since unknown_score: the distance to the training features, in the graph
                scores.append(np.concatenate([outputs[1] for outputs in runs]).astype(np.float64).reshape(-1))
            else:
                scores.append(energy_score(logits))
        return np.mean(probabilities, axis=0), np.mean(scores, axis=0)

    def _load(self, path: Path) -> tuple[np.ndarray | None, str | None]:
        try:
            image = open_image(path, min_side=self.preprocessing.resize_size)
        except ImageReadError as error:
            return None, str(error)
        return eval_pixels(image, self.preprocessing), None

    def _rank(self, pixels: np.ndarray, topk: int, min_confidence: float | None, tta: bool) -> list[Prediction]:
        probabilities, scores = self.outputs(pixels, tta=tta)
        return [
            ranked(row, self.classes, topk=topk, path=None, min_confidence=min_confidence, unknown_score=score)
            for row, score in zip(probabilities, scores, strict=True)
        ]
