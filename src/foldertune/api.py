"""The Python API: `train` a run and `load` a trained classifier.

    import foldertune as ft
    run = ft.train(data="photos/", model="resnet18", mode="linear", epochs=5)   # -> Path('runs/resnet18-linear')
    clf = ft.load(run)
    clf.predict("photo.jpg").label

Heavy imports (torch, torchvision) happen inside the functions, so `import foldertune` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def train(data: str | os.PathLike | None = None, *, quiet: bool = False, **settings: Any) -> Path:
    """Train on `data` (default: the bundled sample) with any setting of `foldertune train`; returns the run folder.

    Settings use the flag names with underscores: model, mode, epochs, batch_size, lr, img_size, val, test,
    manifest, seed, device, precision, patience, name, project, no_pretrained, ... An unknown name is an error
    with a suggestion.
    """
    from foldertune.config import RunConfig
    from foldertune.data import sample_data_path
    from foldertune.training.fit import fit

    if data is None and not settings.get("manifest"):
        data = sample_data_path()
    cfg = RunConfig.from_flat(data=None if data is None else str(data), **settings)
    return fit(cfg, quiet=quiet)


def resume(run: str | os.PathLike, *, epochs: int | None = None, quiet: bool = False) -> Path:
    """Continue an interrupted run from its last.pt (optionally to a larger number of epochs)."""
    from foldertune.training.fit import resume as resume_run

    return resume_run(run, epochs=epochs, quiet=quiet)


def load(path: str | os.PathLike, *, device: str = "auto"):
    """A `Classifier` from a run folder (its best.pt) or a checkpoint file."""
    from foldertune.inference.classifier import Classifier

    return Classifier.from_path(path, device=device)


def evaluate(
    source: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    figures: bool = True,
    fmt: str = "png",
    **options: Any,
) -> Path:
    """Evaluate a run's best.pt (or a checkpoint) on a split or another folder, and draw its figures (unless
    `figures` is False); returns the evaluation folder. Options: split, out, device, progress, log."""
    from foldertune.analysis.evaluation import evaluate_checkpoint
    from foldertune.reporting.plots import plot_evaluation

    out = evaluate_checkpoint(source, data, figures=figures, **options)
    if figures:
        plot_evaluation(out, fmt=fmt)
    return out


def explain(source: str | os.PathLike, paths, **options: Any) -> list[Path]:
    """Grad-CAM maps for image files (`out=`, `class_name=`); returns the files written."""
    from foldertune.reporting.explanations import explain_files

    return explain_files(source, list(paths) if not isinstance(paths, (str, os.PathLike)) else [paths], **options)


def plot(run: str | os.PathLike, *, fmt: str = "png") -> list[Path]:
    """Redraw every figure of a run folder; returns the files written."""
    from foldertune.reporting.plots import plot_run

    return plot_run(run, fmt=fmt)


def compare(runs, *, out: str | os.PathLike | None = None, fmt: str = "png", log=print) -> Path:
    """Overlay the validation curves of several runs and tabulate their best metrics; returns the output folder."""
    from foldertune.analysis.comparison import compare as compare_runs
    from foldertune.reporting.plots.curves import plot_compare

    runs = list(runs)
    out = compare_runs(runs, out=out, log=log)
    plot_compare([Path(run) for run in runs], out, fmt=fmt)
    return out


def report(run: str | os.PathLike) -> Path:
    """Write (or rewrite) run/report.html; returns its path."""
    from foldertune.reporting.html_report import write_report

    return write_report(run)


def check(
    data: str | os.PathLike,
    *,
    fast: bool = False,
    deep: bool = False,
    labels: bool = False,
    fix_manifest: str | os.PathLike | None = None,
    relabel: bool = False,
    force: bool = False,
    progress: bool = True,
    **label_options: Any,
):
    """The dataset doctor on a data folder, a split manifest or a run folder: a DataCheck (`.summary()`, `.rows()`,
    `.findings`, `.scores`, `.near_pairs`, `.duplicate_groups`). Every image is decoded as training reads it, unless
    `fast` (headers only) or `deep` (every pixel at full size). `labels=True` adds suspected label errors (with the
    suggested class and a score), near copies by the backbone's features and outliers; label options: model,
    img_size, folds, min_label_score, device, cache_dir. Nothing is written, except `fix_manifest` when given."""
    from foldertune.data.check import check_source, decode_level

    decode = decode_level(fast=fast, deep=deep)
    options = None
    if labels or fix_manifest is not None or relabel or label_options:
        from foldertune.training.label_check import check_fix_options, check_output_path, label_check_options

        check_fix_options(labels=labels, fix_manifest=fix_manifest, relabel=relabel, label_options=label_options)
        options = label_check_options(**label_options)
        if fix_manifest is not None:
            fix_manifest = check_output_path(fix_manifest, data, flag="--fix-manifest", force=force)
    report = check_source(data, decode=decode, progress=progress)
    if options is not None and labels:
        from foldertune.training.label_check import check_labels, write_fix_manifest

        check_labels(report, options, progress=progress, log=lambda *_: None)
        if fix_manifest is not None:
            write_fix_manifest(report, fix_manifest, relabel=relabel)
    return report


def export(source: str | os.PathLike, *, fmt: str = "onnx", **options: Any):
    """Export a run's best.pt (or a checkpoint) to ONNX or TorchScript, parity-checked; an ExportResult (`.path`,
    `.parity`). Options: out, opset, dynamic_batch, half, images, log."""
    from foldertune.deploy.exporting import export_model

    return export_model(source, fmt=fmt, **options)
