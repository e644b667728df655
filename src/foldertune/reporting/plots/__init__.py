"""Figures of a run, drawn from the run folder alone (CSV, JSON and NumPy files, and the images it lists).

    plot_run("runs/mobilenet_v2-finetune")                # every figure: plots/ and each eval/<split>/ folder
    plot_run("runs/mobilenet_v2-finetune", fmt="pdf")     # the same as PDF (or svg)

Layout: run/plots/ holds the training curves and the augmented-batch grid; run/eval/<split>/ holds the figures
of that evaluation (confusion matrices, per-class bars, PR and ROC curves, reliability diagram, prediction and
top-loss grids, Grad-CAM gallery, feature map).
"""

from __future__ import annotations

import os
from pathlib import Path

from foldertune.errors import UserError
from foldertune.runs.folder import RunFolder


def plot_evaluation(eval_dir: str | os.PathLike, *, fmt: str = "png") -> list[Path]:
    """Every figure of one evaluation folder."""
    from foldertune.reporting.plots.calibration import plot_reliability
    from foldertune.reporting.plots.classification import plot_confusion, plot_per_class, plot_pr_roc
    from foldertune.reporting.plots.feature_map import plot_feature_map
    from foldertune.reporting.plots.gallery import plot_cams, plot_predictions, plot_top_losses

    eval_dir = Path(eval_dir)
    written = [*plot_confusion(eval_dir, fmt=fmt), plot_per_class(eval_dir, fmt=fmt), *plot_pr_roc(eval_dir, fmt=fmt)]
    for draw in (plot_reliability, plot_predictions, plot_top_losses, plot_cams, plot_feature_map):
        written.append(draw(eval_dir, fmt=fmt))
    return [path for path in written if path is not None]


def plot_run(run: str | os.PathLike, *, fmt: str = "png") -> list[Path]:
    """Regenerate every figure of a run folder; returns the files written."""
    from foldertune.reporting.plots.curves import plot_loss, plot_metrics
    from foldertune.reporting.plots.gallery import plot_train_batch

    folder = RunFolder(run)
    if not folder.epochs_file.is_file():
        raise UserError(f"'{run}' is not a run folder with training logs (no epochs.csv); pass a run folder.")
    written = [
        plot_loss(folder.path, fmt=fmt),
        plot_metrics(folder.path, fmt=fmt),
        plot_train_batch(folder.path, fmt=fmt),
    ]
    for evaluation in folder.evaluations():
        written.extend(plot_evaluation(evaluation.path, fmt=fmt))
    return [path for path in written if path is not None]
