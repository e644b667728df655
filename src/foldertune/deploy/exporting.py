"""Export a checkpoint to ONNX (or TorchScript) with its preprocessing, and prove the export agrees with PyTorch.

    result = export_model("runs/mobilenet_v2-finetune", fmt="onnx", dynamic_batch=True)
    result.path           # runs/mobilenet_v2-finetune/export/model.onnx (and model.json beside it)
    result.parity         # {'images': 28, 'top1_agreement': 1.0, 'max_probability_difference': 2.4e-07, ...}

The ONNX file's metadata (key "foldertune") and the JSON beside it hold the class names, the backbone, the input
(name, shape, NCHW float32 RGB), the preprocessing (crop and resize sizes, interpolation, mean, std, the 8:1
aspect limit), the temperature that calibrates its probabilities (softmax(logits / temperature)) and what the
model was trained on (mode, data, validation accuracy). The parity check runs real images through both sides,
exactly as a deployment would, temperature included: PyTorch with the checkpoint and foldertune's own readers;
ONNX Runtime with the torch-free reader of onnx_predictor.py. Top-1 must agree on every image in fp32 (at least
HALF_MIN_AGREEMENT with --half), or the export is refused and nothing is left behind. The model is exported with
torch.export (`torch.onnx.export(dynamo=True)`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from foldertune import __version__
from foldertune.data import sample_data_path
from foldertune.data.scan import list_image_files
from foldertune.data.transforms import normalize_batch
from foldertune.deploy import (
    HALF_MIN_AGREEMENT,
    INT8_MAX_ACCURACY_DROP,
    INT8_MIN_AGREEMENT,
    check_export_options,
    recommended_min_confidence,
)
from foldertune.deploy.onnx_classifier import METADATA_KEY
from foldertune.errors import UserError
from foldertune.inference.unknown import SHRINKAGE, unknown_statistics
from foldertune.models.build import model_from_checkpoint
from foldertune.models.registry import get_backbone
from foldertune.preprocessing import EVAL_MAX_ASPECT, Preprocessing
from foldertune.runs.atomic import check_output, write_json
from foldertune.runs.checkpoint import load_checkpoint
from foldertune.runs.folder import RunFolder, locate_checkpoint

MAX_CHECK_IMAGES = 64  # validation images the parity check runs through both sides
INPUT_NAME, OUTPUT_NAME, SCORE_NAME = "image", "logits", "unknown_score"
UNKNOWN_SCORE_MEANING = (
    "Mahalanobis distance of the L2-normalised head input to the nearest class mean of the training images (shared "
    f"covariance, shrunk {SHRINKAGE:g} to a sphere) plus the energy score (-logsumexp of the logits), each in units of "
    "its spread over the training images (higher: less like them)"
)


class WithUnknownScore(torch.nn.Module):
    """The network with a second output, `inference.unknown.unknown_scores` from the class means and precision
    matrix of the stored training features, computed in the graph so that the ONNX predictor needs no copy of them."""

    def __init__(self, model: torch.nn.Module, backbone: str, means, precision, scale) -> None:
        super().__init__()
        name = get_backbone(backbone).head
        self.head = model.get_submodule(name)
        self.body = copy.deepcopy(model)
        self.body.set_submodule(name, torch.nn.Identity())  # the head is the network's last step: body -> features
        # float64, as numpy computes it: the three terms are large and the distance is their small difference
        means, precision = torch.from_numpy(means).double(), torch.from_numpy(precision).double()
        self.register_buffer("precision", precision)
        self.register_buffer("projected_means", (means @ precision).T.contiguous())  # (D, classes): P.m
        self.register_buffer("constant", ((means @ precision) * means).sum(dim=1))  # (classes,): m.P.m
        self.register_buffer("scale", torch.from_numpy(scale).double())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images).flatten(1)
        logits = self.head(features)
        unit = torch.nn.functional.normalize(features, dim=1).double()
        own = ((unit @ self.precision) * unit).sum(dim=1, keepdim=True)  # u.P.u - 2 u.P.m + m.P.m, as numpy does
        distance = (own - 2 * unit @ self.projected_means + self.constant).min(dim=1).values
        energy = -torch.logsumexp(logits, dim=1).double()
        score = (distance - self.scale[0]) / self.scale[1] + (energy - self.scale[2]) / self.scale[3]
        return logits, score.float()


def _outputs(model: torch.nn.Module) -> int:
    return 2 if isinstance(model, WithUnknownScore) else 1


class ParityError(Exception):
    """The exported model disagrees with PyTorch beyond the allowed bound; nothing was written."""


@dataclass
class ExportResult:
    path: Path
    metadata_path: Path
    parity: dict


def export_model(
    source: str | os.PathLike,
    *,
    fmt: str = "onnx",
    out: str | os.PathLike | None = None,
    force: bool = False,
    opset: int | None = None,
    dynamic_batch: bool = False,
    half: bool = False,
    int8: bool = False,
    images: list[str] | None = None,
    log=print,
) -> ExportResult:
    """Export the checkpoint of `source` (a run folder or a .pt file); check it on `images` (default: the run's
    validation images, else the bundled sample photos). `int8` quantizes the ONNX model (quantization.py), which
    must then also keep the validation accuracy within INT8_MAX_ACCURACY_DROP."""
    check_export_options(fmt=fmt, opset=opset, half=half, int8=int8)
    checkpoint_file, run = locate_checkpoint(source)
    shrunk = "int8" if int8 else "fp16" if half else None  # ONNX only (check_export_options)
    name = "model.torchscript.pt" if fmt != "onnx" else f"model-{shrunk}.onnx" if shrunk else "model.onnx"  # one each
    path = Path(out) if out else run.export_dir / name
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    if path.suffix.lower() != suffix:  # predict and serve tell the formats apart by it
        raise UserError(f"--out '{out}' must end in {suffix} for {'an ONNX' if fmt == 'onnx' else 'a TorchScript'} "
                        f"export, for example {path.with_suffix(suffix).name}.")  # fmt: skip
    check_output(path, "--out", force=force)
    checkpoint = load_checkpoint(checkpoint_file)
    model = model_from_checkpoint(checkpoint).eval()
    pre = Preprocessing.from_dict(checkpoint["preprocessing"])
    metadata = _metadata(checkpoint, pre, fmt=fmt, dynamic_batch=dynamic_batch, half=half, opset=opset)
    metadata["recommended_min_confidence"] = recommended_min_confidence(run)
    # a second output, the unknown_score; not with --half, whose fp16 converter mistypes the graph's reductions (the
    # ONNX predictor then scores by the energy alone)
    _, means, precision, scale = unknown_statistics(checkpoint)
    if fmt == "onnx" and not half and scale is not None:
        model = WithUnknownScore(model, checkpoint["backbone"], means, precision, scale).eval()
        metadata["unknown_score"] = {"name": SCORE_NAME, "meaning": UNKNOWN_SCORE_MEANING}
    if int8:
        from foldertune.deploy.quantization import calibration_files, validation_pairs

        metadata["weights"] = "int8 (static, QDQ, per-channel weights)"
        calibration, labelled = calibration_files(run), validation_pairs(run)
    check_images = _check_images(run, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        draft = Path(scratch) / path.name
        if fmt == "onnx":
            _export_onnx(model, pre, draft, opset=opset, dynamic_batch=dynamic_batch, half=half)
            if int8:
                from foldertune.deploy.quantization import quantize_onnx

                fp32, draft = draft, Path(scratch) / f"int8-{path.name}"
                quantize_onnx(fp32, draft, calibration, pre)
            _set_onnx_metadata(draft, metadata)  # the torch-free reader of the parity check reads it
            parity = _onnx_parity(checkpoint, draft, check_images)
        else:
            _export_torchscript(model, pre, draft)
            parity = _torchscript_parity(checkpoint, draft, check_images)
        needed = INT8_MIN_AGREEMENT if int8 else HALF_MIN_AGREEMENT if half else 1.0
        parity["required_top1_agreement"] = needed
        if int8:
            parity.update(_accuracies(checkpoint, draft, labelled))
        log(_describe(parity))
        if parity["top1_agreement"] < needed:
            raise ParityError(
                f"the exported model agrees with PyTorch on {parity['top1_agreement']:.1%} of {parity['images']} "
                f"images (at least {needed:.0%} needed); nothing was written."
            )
        if int8 and parity["accuracy_drop"] > INT8_MAX_ACCURACY_DROP:
            raise ParityError(
                f"the int8 model's validation accuracy is {parity['int8_accuracy']:.1%} against the checkpoint's "
                f"{parity['checkpoint_accuracy']:.1%} on {parity['accuracy_images']} images (a drop of at most "
                f"{INT8_MAX_ACCURACY_DROP:.0%} allowed); nothing was written: export without --int8."
            )
        metadata["parity"] = parity
        if fmt == "onnx":
            _set_onnx_metadata(draft, metadata)
        os.replace(draft, path)
    metadata_path = path.with_suffix(".json")
    write_json(metadata_path, metadata)
    return ExportResult(path, metadata_path, parity)


def _metadata(checkpoint: dict, pre: Preprocessing, *, fmt: str, dynamic_batch: bool, half: bool, opset) -> dict:
    return {
        "format": fmt,
        "classes": list(checkpoint["classes"]),
        "backbone": checkpoint["backbone"],
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch" if dynamic_batch else 1, 3, pre.crop_size, pre.crop_size],
            "dtype": "float32",
            "layout": "NCHW, RGB, scaled to 0..1, minus mean, over std",
        },
        "output": {
            "name": OUTPUT_NAME,
            "meaning": "logits; softmax(logits / temperature) gives the class probabilities",
        },
        "temperature": float(checkpoint.get("temperature", 1.0)),  # fitted on the validation split after training
        "preprocessing": {
            **pre.to_dict(),
            "max_aspect": EVAL_MAX_ASPECT,
            "steps": "EXIF orientation, RGB, center-crop to max_aspect:1, resize the shorter side to "
            "resize_size, center-crop crop_size",
        },
        "weights": "fp16" if half else "fp32",
        "opset": opset,
        "epoch": checkpoint.get("epoch"),
        "training": _training(checkpoint),
        "foldertune_version": __version__,
    }


def _training(checkpoint: dict) -> dict:
    """What the model learned from, for a deployment to say (the serve page shows it)."""
    settings = checkpoint.get("config") or {}
    data = settings.get("data", {})
    return {
        "mode": settings.get("train", {}).get("mode"),
        "data": data.get("manifest") or data.get("root"),
        "val_accuracy": (checkpoint.get("metrics") or {}).get("accuracy"),
    }


def _check_images(run: RunFolder, images: list[str] | None) -> list[Path]:
    rows = run.split_rows()
    if images:
        files, _ = list_image_files(images)
    elif rows:
        files = [Path(row["path"]) for row in rows if row["split"] == "val"] or [Path(row["path"]) for row in rows]
    else:
        files, _ = list_image_files([sample_data_path()])
    files = [file for file in files if file.exists()][:MAX_CHECK_IMAGES]
    if not files:
        raise UserError("no images to check the export on; pass some with --images PATH.")
    return files


def _export_onnx(model, pre: Preprocessing, path: Path, *, opset, dynamic_batch: bool, half: bool) -> None:
    example = torch.randn(2 if dynamic_batch else 1, 3, pre.crop_size, pre.crop_size)
    dynamic = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each of its passes
            torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME, SCORE_NAME][: _outputs(model)],
                              dynamic_shapes=dynamic,
                              external_data=False, verbose=False)  # fmt: skip
    except ModuleNotFoundError as error:
        raise UserError(f"ONNX export needs {error.name}: pip install 'foldertune[onnx]'.") from None
    if half:
        import onnx
        from onnxconverter_common import float16

        with warnings.catch_warnings():  # it reports every weight below fp16's smallest value, one by one
            warnings.simplefilter("ignore", UserWarning)
            model_proto = float16.convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)  # fp32 in, out
        onnx.save(model_proto, str(path))


def _set_onnx_metadata(path: Path, metadata: dict) -> None:
    import onnx

    model_proto = onnx.load(str(path))
    del model_proto.metadata_props[:]
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, ensure_ascii=False)
    onnx.save(model_proto, str(path))


def _export_torchscript(model, pre: Preprocessing, path: Path) -> None:
    example = torch.randn(1, 3, pre.crop_size, pre.crop_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is in maintenance; it still loads everywhere
        traced = torch.jit.trace(model, example)
    traced.save(str(path))


def _onnx_parity(checkpoint: dict, path: Path, files: list[Path]) -> dict:
    """PyTorch (checkpoint, torch readers) against ONNX Runtime (the torch-free reader), on the same files."""
    from foldertune.deploy.onnx_classifier import OnnxClassifier
    from foldertune.inference.classifier import Classifier

    reference = _torch_probabilities(Classifier(checkpoint, device="cpu", precision="fp32"), files)
    exported = OnnxClassifier(path)
    candidate = {p.path: p for p in exported.predict_files(files, topk=len(exported.classes), progress=False)}
    return _compare(reference, {path: _vector(p, exported.classes) for path, p in candidate.items() if not p.error})


def _torchscript_parity(checkpoint: dict, path: Path, files: list[Path]) -> dict:
    from foldertune.inference.classifier import Classifier

    classifier = Classifier(checkpoint, device="cpu", precision="fp32")
    reference = _torch_probabilities(classifier, files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(path)).eval()
    candidate = {}
    for chunk, errors, images in classifier.load_batches(files, progress=False):
        if images is None:
            continue
        inputs = normalize_batch(images, classifier.preprocessing)
        with torch.no_grad():
            probabilities = torch.softmax(
                scripted(inputs) / classifier.temperature, dim=1
            ).numpy()  # as model.json says
        good = [str(path) for path, error in zip(chunk, errors, strict=True) if error is None]
        candidate.update(zip(good, probabilities, strict=True))
    return _compare(reference, candidate)


def _accuracies(checkpoint: dict, path: Path, labelled: list[tuple[Path, str]]) -> dict:
    """Validation accuracy of the checkpoint (PyTorch, fp32) and of the exported model, on the same images."""
    from foldertune.deploy.onnx_classifier import OnnxClassifier
    from foldertune.deploy.quantization import onnx_accuracy
    from foldertune.inference.classifier import Classifier

    classifier = Classifier(checkpoint, device="cpu", precision="fp32")
    reference = _torch_probabilities(classifier, [file for file, _ in labelled])
    right = [str(file) in reference and classifier.classes[reference[str(file)].argmax()] == label
             for file, label in labelled]  # fmt: skip
    before, after = float(np.mean(right)), onnx_accuracy(OnnxClassifier(path), labelled)
    return {"accuracy_images": len(labelled), "checkpoint_accuracy": before, "int8_accuracy": after,
            "accuracy_drop": before - after}  # fmt: skip


def _torch_probabilities(classifier, files: list[Path]) -> dict[str, np.ndarray]:
    result = {}
    for chunk, errors, images in classifier.load_batches(files, progress=False):
        if images is None:
            continue
        good = [str(path) for path, error in zip(chunk, errors, strict=True) if error is None]
        result.update(zip(good, classifier.probabilities(images), strict=True))
    return result


def _vector(prediction, classes: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    vector = np.zeros(len(classes), dtype=np.float32)
    for name, probability in prediction.topk:
        vector[index[name]] = probability
    return vector


def _compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict:
    if not reference:
        raise UserError("none of the images for the parity check can be read; pass readable ones with --images PATH.")
    if set(reference) != set(candidate):
        raise ParityError("PyTorch and the export could not read the same images; the readers differ.")
    paths = sorted(reference)
    a = np.stack([reference[p] for p in paths])
    b = np.stack([candidate[p] for p in paths])
    return {
        "images": len(paths),
        "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "max_probability_difference": float(np.abs(a - b).max()),
        "mean_probability_difference": float(np.abs(a - b).mean()),
    }


def _describe(parity: dict) -> str:
    accuracy = (
        f"; validation accuracy {parity['int8_accuracy']:.1%} against the checkpoint's "
        f"{parity['checkpoint_accuracy']:.1%} ({parity['accuracy_images']} images)"
        if "accuracy_drop" in parity
        else ""
    )
    return (
        f"parity check on {parity['images']} images: top-1 agreement {parity['top1_agreement']:.1%}, largest "
        f"probability difference {parity['max_probability_difference']:.2e} (mean "
        f"{parity['mean_probability_difference']:.2e})" + accuracy
    )
