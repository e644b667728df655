"""Static int8 quantization of an exported ONNX model, calibrated on the run's training images (`export --int8`).

    files = calibration_files(run)                             # up to CALIBRATION_IMAGES training images, spread out
    quantize_onnx("model-fp32.onnx", "model-int8.onnx", files, pre)
    accuracy = onnx_accuracy(OnnxClassifier(path), labelled)   # on (path, class) pairs

ONNX Runtime's `quantize_static` in the QDQ format: weights int8 per output channel, activations uint8 with ranges
measured (min / max) on the calibration images, read by the same torch-free reader as prediction
(onnx_classifier.py), so the ranges are those the deployed model meets. exporting.py then checks the result against
the checkpoint (top-1 agreement, validation accuracy) and refuses it when it strays too far.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from foldertune.deploy.onnx_classifier import eval_pixels, normalize
from foldertune.errors import UserError
from foldertune.preprocessing import Preprocessing
from foldertune.runs.folder import RunFolder

CALIBRATION_IMAGES = 300  # training images whose activations set the int8 ranges
MAX_ACCURACY_IMAGES = 2000  # validation images on which the accuracy of both models is compared


def calibration_files(run: RunFolder, limit: int = CALIBRATION_IMAGES) -> list[Path]:
    """Training images of the run, every k-th of split.csv so that every class is among them."""
    files = [Path(row["path"]) for row in run.split_rows() if row["split"] == "train"]
    files = [file for file in files[:: max(1, len(files) // limit)] if file.exists()][:limit]
    if not files:
        raise UserError(f"--int8 calibrates on the run's training images, and none of '{run.split_file}' is there; "
                        "restore them, or export without --int8.")  # fmt: skip
    return files


def validation_pairs(run: RunFolder, limit: int = MAX_ACCURACY_IMAGES) -> list[tuple[Path, str]]:
    """(image, class) of the run's validation split, for the accuracy the int8 model must keep."""
    pairs = [(Path(row["path"]), row["class"]) for row in run.split_rows() if row["split"] == "val"]
    pairs = [(path, label) for path, label in pairs if path.exists()][:limit]
    if not pairs:
        raise UserError(f"--int8 compares validation accuracy before and after, and '{run.split_file}' lists no "
                        "validation image that is there; export without --int8.")  # fmt: skip
    return pairs


def quantize_onnx(source: Path, target: Path, files: list[Path], pre: Preprocessing) -> None:
    """Write the int8 (QDQ) version of the fp32 ONNX model `source` to `target`, calibrated on `files`."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(f"prepared-{target.name}")
    # shapes inferred by ONNX (the symbolic inference fails on the unknown_score part), BatchNorm folded into convs
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    source = prepared
    model = onnx.load(str(source))
    graph_input = model.graph.input[0]
    batch = graph_input.type.tensor_type.shape.dim[0].dim_value or 16  # 0: a dynamic batch

    class Images(CalibrationDataReader):
        """Batches of calibration images, read one batch at a time (a few hundred do not all fit in memory)."""

        def __init__(self) -> None:
            self.chunks = iter([files[i : i + batch] for i in range(0, len(files), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            for chunk in self.chunks:
                pixels = [_pixels(path, pre) for path in chunk]
                pixels = [p for p in pixels if p is not None]
                if len(pixels) == len(chunk):  # a fixed-batch model takes full batches only
                    return {graph_input.name: normalize(np.stack(pixels), pre)}
            return None

    quantize_static(str(source), str(target), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    prepared.unlink()


def onnx_accuracy(classifier, pairs: list[tuple[Path, str]]) -> float:
    """Top-1 accuracy of an OnnxClassifier on (image, class) pairs (unreadable images count as wrong)."""
    predictions = classifier.predict_files([path for path, _ in pairs], topk=1, progress=False)
    return float(np.mean([p.label == label for p, (_, label) in zip(predictions, pairs, strict=True)]))


def _pixels(path: Path, pre: Preprocessing) -> np.ndarray | None:
    from foldertune.data.images import ImageReadError, open_image

    try:
        return eval_pixels(open_image(os.fspath(path), min_side=pre.resize_size), pre)
    except ImageReadError:
        return None
