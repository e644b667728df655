"""Figures of a run, drawn from the run folder alone (CSV, JSON and NumPy files, and the images it lists).

    plot_run("runs/mobilenet_v2-finetune")                # every figure: plots/ and each eval/<split>/ folder
    plot_run("runs/mobilenet_v2-finetune", fmt="pdf")     # the same as PDF (or svg)

Layout: run/plots/ holds the training curves and the augmented-batch grid; run/eval/<split>/ holds the figures
of that evaluation (confusion matrices, per-class bars, PR and ROC curves, reliability diagram, prediction and
top-loss grids, Grad-CAM gallery, feature map).

Each figure is its own file, drawn from files alone, so `plot_run` draws them in parallel: in forked processes on
Linux (matplotlib holds the GIL, so threads would not help), one after the other elsewhere.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path

from foldertune.errors import UserError
from foldertune.runs.folder import EvalFolder, RunFolder


def plot_evaluation(eval_dir: str | os.PathLike, *, fmt: str = "png") -> list[Path]:
    """Every figure of one evaluation folder."""
    from foldertune.reporting.plots.fonts import use_fonts_for

    use_fonts_for(EvalFolder(eval_dir).metrics().get("classes", []))  # a font warning names the classes, once
    return _draw(_evaluation_figures(Path(eval_dir)), fmt, processes=1)


def plot_run(run: str | os.PathLike, *, fmt: str = "png", processes: int | None = None) -> list[Path]:
    """Regenerate every figure of a run folder; returns the files written. `processes`: how many draw at once
    (default: one per CPU core, at most 4)."""
    from foldertune.reporting.plots.curves import plot_loss, plot_metrics
    from foldertune.reporting.plots.fonts import use_fonts_for
    from foldertune.reporting.plots.gallery import plot_train_batch

    folder = RunFolder(run)
    if not folder.epochs_file.is_file():
        raise UserError(f"'{run}' is not a run folder with training logs (no epochs.csv); pass a run folder.")
    figures = [(plot_train_batch, folder.path), (plot_loss, folder.path), (plot_metrics, folder.path)]
    for evaluation in folder.evaluations():
        figures += _evaluation_figures(evaluation.path)
    if folder.classes_file.is_file():  # a font warning about the class names once, here, not once per process
        use_fonts_for(folder.classes())
    return _draw(figures, fmt, processes=processes or min(4, os.cpu_count() or 1))


Figure = tuple[Callable[..., Path | list[Path] | None], Path]  # a drawing function and the folder it draws from


def _evaluation_figures(eval_dir: Path) -> list[Figure]:
    """The figures of an evaluation folder, the slowest (the image grids) first."""
    from foldertune.reporting.plots.calibration import plot_reliability
    from foldertune.reporting.plots.classification import plot_confusion, plot_per_class, plot_pr_roc
    from foldertune.reporting.plots.feature_map import plot_feature_map
    from foldertune.reporting.plots.gallery import plot_cams, plot_predictions, plot_top_losses

    draw = (plot_predictions, plot_top_losses, plot_cams, plot_confusion, plot_pr_roc, plot_per_class,
            plot_reliability, plot_feature_map)  # fmt: skip
    return [(function, eval_dir) for function in draw]


def _draw(figures: list[Figure], fmt: str, *, processes: int) -> list[Path]:
    if processes > 1 and len(figures) > 1 and sys.platform == "linux":
        with multiprocessing.get_context("fork").Pool(min(processes, len(figures))) as pool:
            drawn = pool.starmap(_draw_one, [(function, folder, fmt) for function, folder in figures], chunksize=1)
    else:
        drawn = [_draw_one(function, folder, fmt) for function, folder in figures]
    return [path for paths in drawn for path in paths]


def _draw_one(function, folder: Path, fmt: str) -> list[Path]:
    written = function(folder, fmt=fmt)
    return [] if written is None else written if isinstance(written, list) else [written]
