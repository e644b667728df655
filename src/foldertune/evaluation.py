"""Evaluate a checkpoint on a split of its run, or on another folder, and keep everything for plots and report.

    out = evaluate("runs/mobilenet_v2-finetune")                     # best.pt on the run's val split
    out = evaluate("runs/x/best.pt", "new_photos/", split="test")    # on another folder (its test/ if it is split)

The evaluation folder (default: <run>/eval/<split>, or <run>/eval/<folder name>[-<split>]) holds:

    metrics.json         overall figures (accuracy, balanced accuracy, top-k, macro and weighted P/R/F1, loss,
                         macro AP and ROC AUC), the most-confused pairs, classes, preprocessing, unreadable files
    per_class.csv        class, precision, recall, f1, support, average_precision, roc_auc
    predictions.csv      path, true, predicted, confidence, correct, loss, top1, p1, ... (unreadable: error)
    confused_pairs.csv   true, predicted, count, share_of_true
    scores.npy           (images, classes) float32 probabilities, in the order of predictions.csv's readable rows
    embedding.csv        path, true, predicted, x, y, method: the 2-D map of the penultimate features
    cams/                Grad-CAM overlays of the surest right and the worst wrong predictions, and cams.csv
    *.png                the figures drawn from the files above (see foldertune.plots)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from foldertune.checkpoint import load_checkpoint
from foldertune.data.images import ImageReadError, open_image
from foldertune.data.scan import SPLITS, scan_folder
from foldertune.data.split import read_manifest, write_csv
from foldertune.data.transforms import decode_min_side
from foldertune.errors import UserError
from foldertune.metrics import evaluation_report, sample_losses
from foldertune.plots.features import embed, sample_for_map
from foldertune.predict import Classifier

CAMS_PER_KIND = 4  # right and wrong predictions explained in the report


def evaluate(
    source: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    split: str = "val",
    out: str | os.PathLike | None = None,
    device: str = "auto",
    figures: bool = True,
    fmt: str = "png",
    progress: bool = True,
    log=print,
) -> Path:
    """Evaluate `source` (a run folder's best.pt or a checkpoint) and write the evaluation folder; returns it.

    With `figures` False, only the numbers are written (no feature map, Grad-CAM maps or figures): fast.
    """
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}.")
    checkpoint = load_checkpoint(source)
    run = Path(source) if Path(source).is_dir() else Path(source).parent
    records, name = _records(run, checkpoint["classes"], data, split)
    out = Path(out) if out else run / "eval" / name
    out.mkdir(parents=True, exist_ok=True)
    classifier = Classifier(checkpoint, device=device)
    classes = classifier.classes

    index = {label: i for i, label in enumerate(classes)}
    probabilities, features, kept, unreadable = [], [], [], {}
    paths = [Path(path) for path, _ in records]
    for chunk, errors, images in classifier.load_batches(paths, batch_size=64, progress=progress):
        if images is not None:
            scores, penultimate = classifier.probabilities_and_features(images)
            probabilities.append(scores)
            features.append(penultimate)
        for path, error in zip(chunk, errors, strict=True):
            if error is None:
                kept.append(str(path))
            else:
                unreadable[str(path)] = error
    if not kept:
        raise UserError(f"none of the {len(records)} images to evaluate could be read (first: {records[0][0]}).")
    label_of = dict(records)
    targets = np.array([index[label_of[path]] for path in kept])
    probabilities = np.concatenate(probabilities).astype(np.float32)
    features = np.concatenate(features)
    report = evaluation_report(targets, probabilities, classes)

    np.save(out / "scores.npy", probabilities)
    _write_predictions(out, kept, targets, probabilities, classes, unreadable, label_of)
    write_csv(out / "per_class.csv", list(report["per_class"][0]), report["per_class"])
    write_csv(out / "confused_pairs.csv", ["true", "predicted", "count", "share_of_true"], report["confused_pairs"])
    method = _write_embedding(out, kept, targets, probabilities, features, classes) if figures else None
    cams = _write_cams(out, classifier, kept, targets, probabilities, classes, log) if figures else "not asked for"
    metrics = {
        "source": str(Path(source).absolute()),
        "epoch": checkpoint["epoch"],
        "backbone": checkpoint["backbone"],
        "split": split,
        "data": str(Path(data).absolute()) if data else str((run / "split.csv").absolute()),
        "classes": classes,
        "preprocessing": checkpoint["preprocessing"],
        "overall": report["overall"],
        "per_class": report["per_class"],
        "confused_pairs": report["confused_pairs"],
        "unreadable": unreadable,
        "feature_map": method,
        "cams": cams,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if figures:
        from foldertune.plots import plot_evaluation

        plot_evaluation(out, fmt=fmt)
    _log_summary(log, out, report, unreadable)
    return out


def _records(run: Path, classes: list[str], data, split: str) -> tuple[list[tuple[str, str]], str]:
    """(path, class) pairs to evaluate and the evaluation's folder name."""
    if data is None:
        if not (run / "split.csv").is_file():
            raise UserError(f"'{run}' has no split.csv to take the {split} images from; pass DATA as well.")
        records = [(r.path, r.label) for r in read_manifest(run / "split.csv") if r.split == split]
        if not records:
            raise UserError(f"run '{run}' has no {split} images; use --split val, or pass DATA.")
        return records, split
    scan = scan_folder(data, progress=False)
    images = [r for r in scan.images if r.split == split] if scan.presplit else scan.images
    if not images:
        raise UserError(f"'{data}' has no {split}/ images to evaluate.")
    unknown = sorted({r.label for r in images} - set(classes))
    if unknown:
        raise UserError(
            f"'{data}' has classes the model does not know ({', '.join(unknown[:5])}); it knows {', '.join(classes)}."
        )
    return [(r.path, r.label) for r in images], Path(data).name + (f"-{split}" if scan.presplit else "")


def _write_predictions(out, kept, targets, probabilities, classes, unreadable, label_of) -> None:
    k = min(5, len(classes))
    columns = ["path", "true", "predicted", "confidence", "correct", "loss"]
    columns += [name for rank in range(1, k + 1) for name in (f"top{rank}", f"p{rank}")] + ["error"]
    losses = sample_losses(targets, probabilities)
    rows = []
    for path, target, row, loss in zip(kept, targets, probabilities, losses, strict=True):
        order = np.argsort(-row)[:k]
        record = {
            "path": path,
            "true": classes[target],
            "predicted": classes[order[0]],
            "confidence": f"{row[order[0]]:.6f}",
            "correct": int(order[0] == target),
            "loss": f"{loss:.6f}",
        }
        for rank, i in enumerate(order, start=1):
            record[f"top{rank}"], record[f"p{rank}"] = classes[i], f"{row[i]:.6f}"
        rows.append(record)
    rows += [{"path": path, "true": label_of[path], "error": error} for path, error in unreadable.items()]
    write_csv(out / "predictions.csv", columns, rows)


def _write_embedding(out, kept, targets, probabilities, features, classes) -> str | None:
    chosen = sample_for_map(targets)
    if len(chosen) < 5:
        return None
    coordinates, method = embed(features[chosen])
    predicted = probabilities.argmax(axis=1)
    rows = [
        {"path": kept[i], "true": classes[targets[i]], "predicted": classes[predicted[i]],
         "x": f"{x:.4f}", "y": f"{y:.4f}", "method": method}
        for i, (x, y) in zip(chosen, coordinates, strict=True)
    ]  # fmt: skip
    write_csv(out / "embedding.csv", ["path", "true", "predicted", "x", "y", "method"], rows)
    return method


def _write_cams(out, classifier, kept, targets, probabilities, classes, log) -> str:
    """Grad-CAM overlays for the surest right and the worst wrong predictions; returns what was done, in words."""
    from foldertune.gradcam import INSTALL, Explainer, cam_available

    if not cam_available():
        log(f"note: no Grad-CAM maps (the grad-cam package is not installed: {INSTALL})")
        return f"not made: {INSTALL}"
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    right = [i for i in np.argsort(-confidence) if predicted[i] == targets[i]][:CAMS_PER_KIND]
    losses = sample_losses(targets, probabilities)
    wrong = [i for i in np.argsort(-losses) if predicted[i] != targets[i]][:CAMS_PER_KIND]
    folder = out / "cams"
    folder.mkdir(exist_ok=True)
    explainer = Explainer(classifier)
    min_side = decode_min_side(classifier.preprocessing, train=False)
    rows = []
    for kind, chosen in (("right", right), ("wrong", wrong)):
        for rank, i in enumerate(chosen, start=1):
            try:
                image = open_image(kept[i], min_side=min_side)
            except ImageReadError:
                continue
            explanation = explainer.explain([image])[0]
            file = f"{kind}_{rank}.png"
            Image.fromarray(explanation.overlay).save(folder / file)
            rows.append({"file": file, "path": kept[i], "true": classes[targets[i]],
                         "predicted": classes[predicted[i]], "confidence": f"{confidence[i]:.6f}"})  # fmt: skip
    write_csv(folder / "cams.csv", ["file", "path", "true", "predicted", "confidence"], rows)
    return f"{len(rows)} maps"


def _log_summary(log, out: Path, report: dict, unreadable: dict) -> None:
    overall = report["overall"]
    parts = [f"{key} {overall[key]:.4f}" for key in ("accuracy", "balanced_accuracy", "macro_f1", "loss")]
    if "top5_accuracy" in overall:
        parts.append(f"top5 {overall['top5_accuracy']:.4f}")
    log(f"evaluated {overall['images']} images: " + "  ".join(parts))
    for pair in report["confused_pairs"][:3]:
        log(f"  often confused: {pair['true']} -> {pair['predicted']} ({pair['count']}x)")
    if unreadable:
        log(f"  {len(unreadable)} image(s) could not be read (listed in predictions.csv)")
    log(f"evaluation folder: {out}")
