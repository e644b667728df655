"""Evaluate a checkpoint on a split of its run, or on another folder, and keep everything for plots and report.

    out = evaluate_checkpoint("runs/mobilenet_v2-finetune")                   # best.pt on the run's val split
    out = evaluate_checkpoint("runs/x/best.pt", "new_photos/", split="test")  # another folder (its test/ if split)

The evaluation folder (default: <run>/eval/<split>; for another folder <run>/eval/<folder>-<split>, or
<folder>-all when that folder is not split) holds what an earlier evaluation there wrote, replaced:

    metrics.json         overall figures (accuracy, balanced accuracy, top-k, macro and weighted P/R/F1, loss,
                         macro AP and ROC AUC; 95% intervals of accuracy, balanced accuracy and macro F1 as
                         `*_low` / `*_high`; the temperature and the ECE after and before it), the calibration's
                         reliability bins, accuracy against coverage (the suggested --min-confidence), the
                         most-confused pairs, classes, preprocessing, unreadable files, whether --tta was on,
                         and where the outputs came from ("outputs": this evaluation's network pass, or the
                         training's validation pass of that epoch, which the end of a run reuses)
    per_class.csv        class, precision, recall, f1, support, average_precision, roc_auc
    predictions.csv      path, true, predicted, confidence, correct, loss, top1, p1, ... (unreadable: error)
    confused_pairs.csv   true, predicted, count, share_of_true
    scores.npy           (images, classes) float32 probabilities (calibrated: softmax(logits / temperature)), in
                         the order of predictions.csv's readable rows
    embedding.csv        path, true, predicted, x, y, method: the 2-D map of the penultimate features
    cams/                Grad-CAM overlays of the surest right and the worst wrong predictions, and cams.csv

The figures are drawn from these files by foldertune.reporting.plots (`plot_evaluation`); `foldertune evaluate`
and `ft.evaluate` do both.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from foldertune.analysis.calibration import calibration_summary, fit_temperature, softmax
from foldertune.analysis.embedding import embed, sample_for_map
from foldertune.analysis.intervals import describe_interval
from foldertune.analysis.metrics import coverage_report, evaluation_report, sample_losses
from foldertune.data.images import ImageReadError, open_image
from foldertune.data.scan import SPLITS, check_layout, scan_folder
from foldertune.data.split import read_manifest
from foldertune.data.transforms import decode_min_side
from foldertune.errors import UserError
from foldertune.inference.classifier import Classifier
from foldertune.runs.atomic import check_output
from foldertune.runs.cache import file_digest
from foldertune.runs.checkpoint import load_checkpoint, save_checkpoint
from foldertune.runs.folder import EvalFolder, RunFolder, locate_checkpoint
from foldertune.runs.tables import read_table, write_table

CAMS_PER_KIND = 4  # right and wrong predictions explained in the report


@dataclass
class KnownOutputs:
    """The network's outputs for some images, computed by a caller that ran it on them already: the end of a run
    passes its best epoch's validation, which ran best.pt's weights in eval mode and fp32 on the evaluation view."""

    paths: list[str]
    logits: np.ndarray  # (N, classes) float32, before any temperature
    features: np.ndarray  # (N, features) float32: what the head received


def evaluate_checkpoint(
    source: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    split: str = "val",
    out: str | os.PathLike | None = None,
    force: bool = False,
    device: str = "auto",
    figures: bool = True,
    calibrate: bool = False,
    tta: bool = False,
    progress: bool = True,
    log=print,
    seconds: dict[str, float] | None = None,
    classifier: Classifier | None = None,
    known: KnownOutputs | None = None,
) -> Path:
    """Evaluate `source` (a run folder's best.pt or a checkpoint) and write the evaluation folder; returns it.

    With `figures` False, only the numbers are written, not what the figures need besides (the feature map's
    embedding, Grad-CAM maps): fast. With `calibrate`, the temperature is fitted on these images' logits and
    stored in the checkpoint before the probabilities are computed (the end of training does this on the
    validation split). With `tta`, the probabilities are the mean over the image and its mirror image. An `out`
    folder that holds files is refused unless `force`; the run's own evaluation folders are replaced. `seconds`,
    when given, receives the time each part took (network, feature map, Grad-CAM), added to what it holds.
    `classifier`: the checkpoint's network, already built by a caller that evaluates several splits (the end of a
    run builds it once, in the run's training precision); by default one is built here, in fp32. `known`: the
    outputs for these images where the caller has them already (used only when it holds every image, without
    `tta`): no network pass then.
    """
    seconds = {} if seconds is None else seconds
    started = time.perf_counter()
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}.")
    if out:
        check_output(out, "--out", force=force, folder=True)
    checkpoint_file, run = locate_checkpoint(source)
    checkpoint = load_checkpoint(checkpoint_file)
    records, name = _records(run, checkpoint["classes"], data, split, log)
    folder = EvalFolder(out) if out else run.evaluation(name)
    if folder.path.resolve() == run.path.resolve():
        raise UserError(
            f"--out '{out}' is the run folder itself; pass a folder of its own, e.g. {run.evaluation(name).path}."
        )
    folder.clear()
    out = folder.path
    if classifier is None:
        classifier = Classifier(checkpoint, device=device)
    classes = classifier.classes

    index = {label: i for i, label in enumerate(classes)}
    kept, views, features, unreadable, reused = _outputs(classifier, [path for path, _ in records], tta, known,
                                                         progress)  # fmt: skip
    if not kept:
        raise UserError(f"none of the {len(records)} images to evaluate could be read (first: {records[0][0]}).")
    label_of = dict(records)
    targets = np.array([index[label_of[path]] for path in kept])
    logits = views.mean(axis=0)  # (N, classes); with --tta the mean over the image and its mirror image
    if calibrate:
        checkpoint["temperature"] = classifier.temperature = fit_temperature(logits, targets)
        save_checkpoint(checkpoint_file, checkpoint)
    probabilities = np.mean([softmax(view, classifier.temperature) for view in views], axis=0)
    result = _Result(kept=kept, targets=targets, probabilities=probabilities.astype(np.float32), classes=classes)
    report = evaluation_report(result.targets, result.probabilities, classes)
    calibration = calibration_summary(logits, targets, classifier.temperature)
    report["overall"].update({key: calibration[key] for key in ("temperature", "ece", "ece_before")})

    np.save(folder.scores_file, result.probabilities)
    _write_predictions(folder, result, unreadable, label_of)
    write_table(folder.per_class_file, list(report["per_class"][0]), report["per_class"])
    write_table(folder.confused_pairs_file, ["true", "predicted", "count", "share_of_true"], report["confused_pairs"])
    _add_time(seconds, "network", started)
    method, cams = None, "not asked for"
    if figures:
        started = time.perf_counter()
        method = _write_embedding(folder, result, features)
        _add_time(seconds, "feature map", started)
        started = time.perf_counter()
        cams = _write_cams(folder, classifier, result, log)
        _add_time(seconds, "Grad-CAM", started)
    metrics = {
        "source": str(Path(source).absolute()),
        "epoch": checkpoint["epoch"],
        "backbone": checkpoint["backbone"],
        "split": split,
        "data": str(Path(data).absolute()) if data else str(run.split_file.absolute()),
        "classes": classes,
        "preprocessing": checkpoint["preprocessing"],
        "overall": report["overall"],
        "tta": tta,
        "outputs": "the validation pass of that epoch" if reused else "this evaluation's network pass",
        "coverage": coverage_report(result.targets, result.probabilities),
        "per_class": report["per_class"],
        "confused_pairs": report["confused_pairs"],
        "calibration": calibration,
        "unreadable": unreadable,
        "figures": figures,
        "feature_map": method,
        "cams": cams,
    }
    folder.write_metrics(metrics)
    _log_summary(log, out, report, unreadable)
    return out


def _outputs(
    classifier: Classifier, files: list[str], tta: bool, known: KnownOutputs | None, progress: bool
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, str], bool]:
    """(readable files, logits of each view (views, N, classes), head inputs (N, features), {unreadable file:
    error}, whether they came from `known`): from `known` when it holds every file, otherwise from the network."""
    if known is not None and not tta:
        row = {path: i for i, path in enumerate(known.paths)}
        if all(path in row for path in files):
            order = [row[path] for path in files]
            return list(files), known.logits[order][None], known.features[order], {}, True
    logits, features, kept, unreadable = [], [], [], {}
    for chunk, errors, images in classifier.load_batches([Path(f) for f in files], batch_size=64, progress=progress):
        if images is not None:
            view_logits, penultimate = classifier.view_logits(images, tta=tta)
            logits.append(view_logits)
            features.append(penultimate)
        for path, error in zip(chunk, errors, strict=True):
            if error is None:
                kept.append(str(path))
            else:
                unreadable[str(path)] = error
    if not kept:
        return [], np.empty((1, 0, 0)), np.empty((0, 0)), unreadable, False
    return kept, np.concatenate(logits, axis=1), np.concatenate(features), unreadable, False


def _add_time(seconds: dict[str, float], part: str, started: float) -> None:
    seconds[part] = seconds.get(part, 0.0) + time.perf_counter() - started


@dataclass
class _Result:
    """What the network said about the readable images, computed once for every file written."""

    kept: list[str]  # paths, in order
    targets: np.ndarray  # (N,) true class indices
    probabilities: np.ndarray  # (N, classes)
    classes: list[str]

    def __post_init__(self) -> None:
        self.predicted = self.probabilities.argmax(axis=1)
        self.confidence = self.probabilities.max(axis=1)
        self.losses = sample_losses(self.targets, self.probabilities)


def _records(run: RunFolder, classes: list[str], data, split: str, log) -> tuple[list[tuple[str, str]], str]:
    """(path, class) pairs to evaluate and the evaluation's folder name."""
    if data is None:
        if not run.split_file.is_file():
            raise UserError(f"'{run.path}' has no split.csv to take the {split} images from; pass DATA as well.")
        records = [(r.path, r.label) for r in read_manifest(run.split_file) if r.split == split]
        if not records:
            raise UserError(f"run '{run.path}' has no {split} images; use --split val, or pass DATA.")
        return records, split
    scan = scan_folder(data, verify=False, progress=False)  # unreadable files show up in predictions.csv
    check_layout(scan, min_classes=1)  # one class is enough to measure on
    if not scan.presplit and split != "val":  # "val", the default, stands for the whole of an unsplit folder
        raise UserError(f"'{data}' is not split into train/, val/ and test/ folders, so --split {split} has nothing to "
                        "choose from; drop --split to evaluate every image in it.")  # fmt: skip
    images = [r for r in scan.images if r.split == split] if scan.presplit else scan.images
    if not images:
        raise UserError(f"'{data}' has no {split}/ images to evaluate.")
    unknown = sorted({r.label for r in images} - set(classes))
    if unknown:
        raise UserError(
            f"'{data}' has classes the model does not know ({', '.join(unknown[:5])}); it knows {', '.join(classes)}."
        )
    if _trained_on(run, scan.root):
        log("note: DATA is the folder this run was trained on, so its training images are included; "
            "`foldertune evaluate RUN` evaluates on the held-out split only.")  # fmt: skip
    else:
        copies = training_copies(run, [r.path for r in images])
        if copies:
            log(f"warning: {len(copies)} of the {len(images)} images in '{data}' are copies of this run's training "
                f"images (first: {copies[0]}); their scores are inflated: evaluate on images the run never "
                "saw.")  # fmt: skip
    folder = scan.root.resolve().name or "data"
    return [(r.path, r.label) for r in images], f"{folder}-{split if scan.presplit else 'all'}"


def training_copies(run: RunFolder, paths: list[str]) -> list[str]:
    """The files among `paths` with the same bytes as one of the run's training images. data_check.csv holds their
    sizes, so only files of a size found there are hashed."""
    if not run.data_check_file.is_file():
        return []
    by_size: dict[int, list[str]] = defaultdict(list)
    for row in read_table(run.data_check_file):
        if row.get("split") == "train" and row.get("bytes"):
            by_size[int(row["bytes"])].append(row["path"])
    digests: dict[str, str | None] = {}

    def digest(path: str) -> str | None:
        if path not in digests:
            try:
                digests[path] = file_digest(path)
            except OSError:
                digests[path] = None
        return digests[path]

    copies = []
    for path in paths:
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        if size in by_size and digest(path) in {digest(original) for original in by_size[size]}:
            copies.append(path)
    return copies


def _trained_on(run: RunFolder, root: Path) -> bool:
    try:
        source = run.config()["data"]["source"]
    except (OSError, KeyError, ValueError):
        return False
    return Path(source).resolve() == root.resolve()


def _write_predictions(
    folder: EvalFolder, result: _Result, unreadable: dict[str, str], label_of: dict[str, str]
) -> None:
    classes = result.classes
    k = min(5, len(classes))
    columns = ["path", "true", "predicted", "confidence", "correct", "loss"]
    columns += [name for rank in range(1, k + 1) for name in (f"top{rank}", f"p{rank}")] + ["error"]
    rows = []
    for i, path in enumerate(result.kept):
        row = result.probabilities[i]
        order = np.argsort(-row, kind="stable")[:k]  # the first of equal scores first, as argmax picks
        record = {
            "path": path,
            "true": classes[result.targets[i]],
            "predicted": classes[result.predicted[i]],
            "confidence": f"{result.confidence[i]:.6f}",
            "correct": int(result.predicted[i] == result.targets[i]),
            "loss": f"{result.losses[i]:.6f}",
        }
        for rank, j in enumerate(order, start=1):
            record[f"top{rank}"], record[f"p{rank}"] = classes[j], f"{row[j]:.6f}"
        rows.append(record)
    rows += [{"path": path, "true": label_of[path], "error": error} for path, error in unreadable.items()]
    write_table(folder.predictions_file, columns, rows)


def _write_embedding(folder: EvalFolder, result: _Result, features: np.ndarray) -> str | None:
    chosen = sample_for_map(result.targets)
    if len(chosen) < 5:
        return None
    coordinates, method = embed(features[chosen])
    classes = result.classes
    rows = [
        {"path": result.kept[i], "true": classes[result.targets[i]], "predicted": classes[result.predicted[i]],
         "x": f"{x:.4f}", "y": f"{y:.4f}", "method": method}
        for i, (x, y) in zip(chosen, coordinates, strict=True)
    ]  # fmt: skip
    write_table(folder.embedding_file, ["path", "true", "predicted", "x", "y", "method"], rows)
    return method


def _write_cams(out: EvalFolder, classifier: Classifier, result: _Result, log) -> str:
    """Grad-CAM overlays for the surest right and the worst wrong predictions; returns what was done, in words."""
    from foldertune.inference.gradcam import INSTALL, Explainer, cam_available

    if not cam_available():
        log(f"note: no Grad-CAM maps (the grad-cam package is not installed: {INSTALL})")
        return f"not made: {INSTALL}"
    right = [i for i in np.argsort(-result.confidence) if result.predicted[i] == result.targets[i]][:CAMS_PER_KIND]
    wrong = [i for i in np.argsort(-result.losses) if result.predicted[i] != result.targets[i]][:CAMS_PER_KIND]
    folder = out.cams_dir
    folder.mkdir(exist_ok=True)
    min_side = decode_min_side(classifier.preprocessing)
    shown, images = [], []
    for kind, chosen in (("right", right), ("wrong", wrong)):
        for i in chosen:
            try:
                images.append(open_image(result.kept[i], min_side=min_side))
            except ImageReadError:
                continue
            shown.append((kind, i))
    known = result.probabilities[[i for _, i in shown]]  # this evaluation's: no second forward pass
    explanations = Explainer(classifier).explain(images, probabilities=known) if images else []  # one batch
    rows, ranks = [], {"right": 0, "wrong": 0}
    for (kind, i), explanation in zip(shown, explanations, strict=True):
        ranks[kind] += 1
        file = f"{kind}_{ranks[kind]}.png"
        Image.fromarray(explanation.overlay).save(folder / file)
        rows.append({"file": file, "path": result.kept[i], "true": result.classes[result.targets[i]],
                     "predicted": result.classes[result.predicted[i]],
                     "confidence": f"{result.confidence[i]:.6f}"})  # fmt: skip
    write_table(folder / "cams.csv", ["file", "path", "true", "predicted", "confidence"], rows)
    return f"{len(rows)} maps"


def _log_summary(log, out: Path, report: dict, unreadable: dict) -> None:
    overall = report["overall"]
    log(f"evaluated {overall['images']} images:")
    log("  " + summary_line(overall))
    if "top5_accuracy" in overall:
        log(f"  top5 accuracy {overall['top5_accuracy']:.4f}")
    log(f"  calibration: temperature {overall['temperature']:.2f}, expected calibration error {overall['ece']:.3f} "
        f"(before: {overall['ece_before']:.3f})")  # fmt: skip
    for pair in report["confused_pairs"][:3]:
        log(f"  often confused: {pair['true']} -> {pair['predicted']} ({pair['count']}x)")
    if unreadable:
        log(f"  {len(unreadable)} image(s) could not be read (listed in predictions.csv)")
    log(f"evaluation folder: {out}")


def summary_line(overall: dict, *, balanced_first: bool = False) -> str:
    """'accuracy 0.929 (95% interval 0.77-0.98, 28 images)  balanced_accuracy 0.920 (0.79-1.00)  macro_f1 ...
    loss ...': the terminal's summary of an evaluation, from its metrics.json "overall"; `balanced_first` (classes
    imbalanced): balanced accuracy leads, with the interval's sentence."""
    first, second = ("balanced_accuracy", "accuracy") if balanced_first else ("accuracy", "balanced_accuracy")
    lead = describe_interval(overall[first], overall[first + "_low"], overall[first + "_high"], overall["images"])
    parts = [f"{first} {lead}"]
    for key in (second, "macro_f1"):
        parts.append(f"{key} {overall[key]:.3f} ({overall[key + '_low']:.2f}-{overall[key + '_high']:.2f})")
    parts.append(f"loss {overall['loss']:.4f}")
    return "  ".join(parts)
