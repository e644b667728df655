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
from pathlib import Path

import numpy as np
from PIL import Image

from foldertune.data.images import ImageReadError, open_image, to_rgb
from foldertune.data.scan import list_image_files
from foldertune.errors import UserError
from foldertune.inference.prediction import Prediction, check_predict_options, pictures_from_array, ranked
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

    def predict(self, inputs, *, topk: int = 5):
        """Predictions for a path, a PIL image, an HxWx3 uint8 array, or a list of them; a folder, a list or an
        NxHxWx3 array gives a list."""
        if isinstance(inputs, np.ndarray):
            inputs = pictures_from_array(inputs)
        check_predict_options(topk=topk)
        if isinstance(inputs, Image.Image):
            return self._rank(self.probabilities(eval_pixels(to_rgb(inputs), self.preprocessing)[None]), topk)[0]
        if isinstance(inputs, (str, os.PathLike)):
            results = self.predict_files([inputs], topk=topk, progress=False)
            return results if Path(inputs).is_dir() else results[0]
        items = list(inputs)
        if all(isinstance(item, Image.Image) for item in items):
            pixels = np.stack([eval_pixels(to_rgb(item), self.preprocessing) for item in items])
            return self._rank(self.probabilities(pixels), topk)
        return self.predict_files(items, topk=topk, progress=False)

    def predict_files(
        self, paths: Iterable[str | os.PathLike], *, topk: int = 5, batch_size: int = 32, progress: bool = True
    ) -> list[Prediction]:
        """Files and folders (searched recursively), decoded in parallel threads, run in batches."""
        check_predict_options(topk=topk, batch_size=batch_size)
        files, _ = list_image_files(list(paths))
        results: list[Prediction] = []
        bar = tqdm(total=len(files), desc="predicting", unit="img", disable=None if progress else True, leave=False)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(files), batch_size):
                chunk = files[start : start + batch_size]
                loaded = list(pool.map(self._load, chunk))
                good = [pixels for pixels, _ in loaded if pixels is not None]
                probabilities = iter(self.probabilities(np.stack(good)) if good else [])
                for path, (pixels, error) in zip(chunk, loaded, strict=True):
                    if pixels is None:
                        results.append(Prediction(None, None, [], str(path), error))
                    else:
                        results.append(ranked(next(probabilities), self.classes, topk=topk, path=str(path)))
                bar.update(len(chunk))
        bar.close()
        return results

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) uint8 from `eval_pixels` -> (N, classes) calibrated probabilities, softmax(logits / T)."""
        return softmax(self.logits(pixels), self.temperature)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) uint8 from `eval_pixels` -> (N, classes) float32 logits, as the model outputs them."""
        inputs = normalize(pixels, self.preprocessing)
        step = self.batch_size or len(inputs)
        logits = [
            self.session.run(None, {self.input_name: inputs[i : i + step]})[0] for i in range(0, len(inputs), step)
        ]
        return np.concatenate(logits).astype(np.float32)

    def _load(self, path: Path) -> tuple[np.ndarray | None, str | None]:
        try:
            image = open_image(path, min_side=self.preprocessing.resize_size)
        except ImageReadError as error:
            return None, str(error)
        return eval_pixels(image, self.preprocessing), None

    def _rank(self, probabilities: np.ndarray, topk: int) -> list[Prediction]:
        return [ranked(row, self.classes, topk=topk, path=None) for row in probabilities]
