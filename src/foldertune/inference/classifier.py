"""Predict with a trained checkpoint, using exactly the preprocessing and the temperature stored in it.

    clf = Classifier.from_path("runs/mobilenet_v2-finetune")     # a run folder (its best.pt) or a .pt file
    clf.predict("photo.jpg")          # Prediction(label='fishes', probability=0.97, topk=[('fishes', 0.97), ...])
    clf.predict(["a.jpg", pil_image]) # a list in, a list out; a folder in, a list out (recursively)

Probabilities are softmax(logits / temperature), the temperature fitted on the validation split after training
(analysis/calibration.py; 1 for a checkpoint that has none). An unreadable file gives a Prediction with `error`
set instead of stopping the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from foldertune.data.images import ImageReadError, to_rgb
from foldertune.data.readers import EvalReader
from foldertune.data.scan import list_image_files
from foldertune.data.transforms import build_eval_transform, model_input, tta_views
from foldertune.device import choose_runtime
from foldertune.errors import named_keywords
from foldertune.inference.prediction import Prediction, check_predict_options, predict_input, ranked
from foldertune.inference.unknown import unknown_scores, unknown_statistics
from foldertune.models.build import capture_head_input, fuse_for_inference, model_from_checkpoint
from foldertune.notebook import card, escape, html_table, tqdm
from foldertune.preprocessing import Preprocessing
from foldertune.runs.checkpoint import load_checkpoint


class Classifier:
    """A trained network with its class names and preprocessing, ready to predict."""

    def __init__(self, checkpoint: dict, *, device: str = "auto", precision: str = "fp32") -> None:
        self.classes: list[str] = list(checkpoint["classes"])
        self.preprocessing = Preprocessing.from_dict(checkpoint["preprocessing"])
        self.backbone: str = checkpoint["backbone"]
        self.epoch: int = checkpoint["epoch"]
        self.metrics: dict = dict(checkpoint.get("metrics") or {})  # that epoch's validation summary
        self.settings: dict = dict(checkpoint.get("config") or {})  # RunConfig.to_dict() of the run
        self.temperature = float(checkpoint.get("temperature", 1.0))  # fitted after training; 1 in older checkpoints
        self.runtime = choose_runtime(device, precision)
        layout = torch.channels_last if self.runtime.channels_last else torch.preserve_format
        self.model = model_from_checkpoint(checkpoint).to(self.runtime.device, memory_format=layout)  # for Grad-CAM
        self.fused = fuse_for_inference(self.model).to(memory_format=layout)  # for predictions: faster, same result
        self.transform = build_eval_transform(self.preprocessing)
        # the training features, the class means and precision matrix computed from them and the (4,) scale; Nones
        # for a checkpoint without them (see inference/unknown.py)
        self.reference, self.means, self.precision, self.scale = unknown_statistics(checkpoint)

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs) -> Classifier:
        return cls(load_checkpoint(path), **kwargs)

    def describe(self) -> list[tuple[str, str]]:
        """What the model is and what it learned from, as (name, value) rows: for a notebook and the serve page."""
        data, mode = self.settings.get("data", {}), self.settings.get("train", {}).get("mode", "?")
        source = data.get("manifest") or data.get("root") or "?"
        scored = f", validation accuracy {self.metrics['accuracy']:.3f}" if "accuracy" in self.metrics else ""
        if "accuracy_low" in self.metrics:
            scored += f" (95% interval {self.metrics['accuracy_low']:.2f}-{self.metrics['accuracy_high']:.2f})"
        return [
            ("backbone", f"{self.backbone}, {mode} mode"),
            ("trained on", str(source)),
            ("checkpoint", f"epoch {self.epoch}{scored}"),
            ("input", f"{self.preprocessing.crop_size}x{self.preprocessing.crop_size} px"),
            ("classes", f"{len(self.classes)}: " + ", ".join(self.classes)),
        ]

    def _repr_html_(self) -> str:
        return card("Classifier", html_table(None, self.describe()) + f"<div>on {escape(self.runtime.describe())}"
                    "; <code>clf.predict(path or image)</code></div>")  # fmt: skip

    @named_keywords
    def predict(self, inputs, *, topk: int = 5, batch_size: int = 64, min_confidence: float | None = None,
                tta: bool = False):  # fmt: skip
        """Predictions for a path, a PIL image, an HxWx3 uint8 array, or a list of them; a folder, a list or an
        NxHxWx3 array gives a list. Below `min_confidence` the label is 'unknown' (`top_label` keeps the class);
        `tta` averages the probabilities over the image and its mirror image."""
        inputs = predict_input(inputs)
        check_predict_options(topk=topk, batch_size=batch_size, min_confidence=min_confidence, classes=self.classes)
        options = {"topk": topk, "min_confidence": min_confidence, "tta": tta}
        if isinstance(inputs, Image.Image):
            return self._predict_images([inputs], **options)[0]
        if isinstance(inputs, (str, os.PathLike)):
            results = self.predict_files([inputs], batch_size=batch_size, progress=False, **options)
            return results if Path(inputs).is_dir() else results[0]
        items = list(inputs)
        if all(isinstance(item, (str, os.PathLike)) for item in items):
            return self.predict_files(items, batch_size=batch_size, progress=False, **options)
        if all(isinstance(item, Image.Image) for item in items):
            return [
                p
                for i in range(0, len(items), batch_size)
                for p in self._predict_images(items[i : i + batch_size], **options)
            ]
        results = []
        for item in items:
            result = self.predict(item, batch_size=batch_size, **options)
            results.extend(result if isinstance(result, list) else [result])
        return results

    def predict_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        topk: int = 5,
        batch_size: int = 64,
        progress: bool = True,
        min_confidence: float | None = None,
        tta: bool = False,
    ) -> list[Prediction]:
        """Files and folders (searched recursively), in batches, decoded in parallel threads."""
        check_predict_options(topk=topk, batch_size=batch_size, min_confidence=min_confidence, classes=self.classes)
        files, _ = list_image_files(list(paths))
        results: list[Prediction] = []
        for chunk, errors, images in self.load_batches(files, batch_size=batch_size, progress=progress):
            ranked_batch = iter(self._rank(images, topk, min_confidence, tta) if images is not None else [])
            for path, error in zip(chunk, errors, strict=True):
                if error is None:
                    results.append(replace(next(ranked_batch), path=str(path)))
                else:
                    results.append(Prediction(None, None, [], str(path), error))
        return results

    def unknown_scores(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        """How unlike the training images each image is (higher: less like them); see inference/unknown.py."""
        return unknown_scores(logits, features, self.means, self.precision, self.scale)

    def load_batches(
        self, files: list[Path], *, batch_size: int = 64, progress: bool = True
    ) -> Iterator[tuple[list[Path], list[str | None], torch.Tensor | None]]:
        """(files, error or None per file, uint8 batch of the readable ones) for each chunk of `files`."""
        read = EvalReader(self.preprocessing)

        def load(path: Path):
            try:
                return read(path), None
            except ImageReadError as error:
                return None, str(error)

        bar = tqdm(total=len(files), desc="predicting", unit="img", disable=None if progress else True, leave=False)
        chunks = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            pending = [pool.submit(load, path) for path in chunks[0]] if chunks else []
            for number, chunk in enumerate(chunks):
                loaded = [future.result() for future in pending]
                if number + 1 < len(chunks):  # decode the next chunk while the caller runs the network on this one
                    pending = [pool.submit(load, path) for path in chunks[number + 1]]
                tensors = [tensor for tensor, _ in loaded if tensor is not None]
                yield chunk, [error for _, error in loaded], torch.stack(tensors) if tensors else None
                bar.update(len(chunk))
        bar.close()

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor, *, tta: bool = False) -> np.ndarray:
        """(N, 3, H, W) uint8 tensors from the eval transform -> (N, classes) softmax probabilities (with `tta`, the
        mean over the views of `tta_views`)."""
        return self.outputs(images, tta=tta)[0]

    @torch.inference_mode()
    def probabilities_and_features(self, images: torch.Tensor, *, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities (N, classes), softmax(logits / temperature), and the penultimate features the
        head receives (N, features)."""
        probabilities, _, features = self.outputs(images, tta=tta)
        return probabilities, features

    @torch.inference_mode()
    def outputs(self, images: torch.Tensor, *, tta: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated probabilities (N, classes), logits before the temperature (N, classes) and head inputs
        (N, features), float32; with `tta`, each is the mean over the views of `tta_views` (the probabilities: the
        mean of each view's softmax)."""
        views = self._views(images, tta=tta)
        return tuple(np.mean([view[i] for view in views], axis=0) for i in range(3))

    @torch.inference_mode()
    def view_logits(self, images: torch.Tensor, *, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The logits of each view before the temperature (views, N, classes) and the head inputs averaged over the
        views (N, features): what an evaluation needs to fit the temperature first."""
        views = self._views(images, tta=tta)
        return np.stack([view[1] for view in views]), np.mean([view[2] for view in views], axis=0)

    def _views(self, images: torch.Tensor, *, tta: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(calibrated probabilities, logits, features) of each view: the images, and with `tta` their mirror
        images."""
        inputs = model_input(images, self.preprocessing, device=self.runtime.device,
                             channels_last=self.runtime.channels_last)  # fmt: skip
        views = []
        for view in tta_views(inputs) if tta else [inputs]:
            with capture_head_input(self.fused, self.backbone) as captured, self.runtime.autocast():
                logits = self.fused(view).float()
            features = captured[0].float().flatten(1).cpu().numpy()
            probabilities = torch.softmax(logits / self.temperature, dim=1).cpu().numpy()
            views.append((probabilities, logits.cpu().numpy(), features))
        return views

    def _predict_images(self, images: list[Image.Image], **options) -> list[Prediction]:
        return self._rank(torch.stack([self.transform(to_rgb(image)) for image in images]), **options)

    def _rank(self, images: torch.Tensor, topk: int, min_confidence: float | None, tta: bool) -> list[Prediction]:
        with torch.inference_mode():
            views = self._views(images, tta=tta)
        probabilities = np.mean([view[0] for view in views], axis=0)
        scores = np.mean([self.unknown_scores(logits, features) for _, logits, features in views], axis=0)
        return [
            ranked(row, self.classes, topk=topk, path=None, min_confidence=min_confidence, unknown_score=score)
            for row, score in zip(probabilities, scores, strict=True)
        ]
