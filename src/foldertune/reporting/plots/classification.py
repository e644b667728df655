"""Figures of an evaluation folder: confusion matrices, per-class bars, precision-recall and ROC curves.

    plot_confusion(eval_dir)   # confusion_matrix.png (counts) and confusion_matrix_normalized.png (rows sum to 1)
    plot_per_class(eval_dir)   # per_class.png: precision / recall / F1 per class, sorted by F1, with support
    plot_pr_roc(eval_dir)      # pr_curves.png and roc_curves.png, one-vs-rest, with AP / AUC per class

They read metrics.json, predictions.csv, per_class.csv and scores.npy, and stay legible with hundreds of
classes: figures grow with the class count, labels shrink and rotate, cell numbers appear only where they fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from foldertune.analysis.metrics import confusion
from foldertune.reporting.plots.common import cell_size, fit_font, new_figure, save, shorten
from foldertune.runs.folder import EvalFolder
from foldertune.runs.tables import read_table

MAX_ANNOTATED = 25  # classes up to which every confusion cell shows its number
MAX_CURVES = 10  # classes drawn on the PR / ROC figures: all of them, or the worst ten


def load_evaluation(eval_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """classes, true indices, predicted indices, probabilities (rows of predictions.csv with a prediction)."""
    folder = EvalFolder(eval_dir)
    classes = folder.metrics()["classes"]
    index = {name: i for i, name in enumerate(classes)}
    rows = [row for row in read_table(folder.predictions_file) if row["predicted"]]
    targets = np.array([index[row["true"]] for row in rows], dtype=int)
    predictions = np.array([index[row["predicted"]] for row in rows], dtype=int)
    scores = np.load(folder.scores_file)
    return classes, targets, predictions, scores


def plot_confusion(eval_dir: Path, *, fmt: str = "png") -> list[Path]:
    classes, targets, predictions, _ = load_evaluation(eval_dir)
    counts = confusion(targets, predictions, len(classes))
    rows = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    return [
        _confusion_figure(counts, classes, eval_dir / "confusion_matrix", "Confusion matrix (counts)", fmt),
        _confusion_figure(normalized, classes, eval_dir / "confusion_matrix_normalized",
                          "Confusion matrix (each row sums to 1)", fmt),
    ]  # fmt: skip


def _confusion_figure(matrix: np.ndarray, classes: list[str], stem: Path, title: str, fmt: str) -> Path:
    n = len(classes)
    cell = cell_size(n, preferred=0.22)
    side = max(5.5, cell * n + 3)  # 3 inches for the labels
    font = fit_font(max(cell, 5.5 / n))
    fig, ax = new_figure(labels=classes, size=(side + 1, side))
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    names = [shorten(name) for name in classes]
    ax.set_xticks(range(n), names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= MAX_ANNOTATED:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            if value:
                text = f"{value:.2f}" if matrix.dtype.kind == "f" else str(int(value))
                ax.text(j, i, text, ha="center", va="center", fontsize=font * 0.9,
                        color="white" if value > threshold else "black")  # fmt: skip
    return save(fig, stem, fmt=fmt)


def plot_per_class(eval_dir: Path, *, fmt: str = "png") -> Path:
    table = read_table(eval_dir / "per_class.csv")
    rows = sorted((row for row in table if int(row["support"]) > 0), key=lambda row: float(row["f1"]))
    absent = len(table) - len(rows)  # classes with no image in this split: no score to show
    n = len(rows)
    names = [shorten(row["class"]) for row in rows]
    cell = cell_size(n, preferred=0.3, total=60)
    font = fit_font(cell)
    fig, ax = new_figure(labels=names, size=(8, max(3.0, cell * n + 1.2)))
    y = np.arange(n)
    height = 0.27
    for offset, key, colour in ((-height, "precision", "#64b5f6"), (0, "recall", "#81c784"), (height, "f1", "#e57373")):
        ax.barh(y + offset, [float(row[key]) for row in rows], height=height, color=colour, label=key)
    for i, row in enumerate(rows):
        ax.text(1.01, i, f"n={row['support']}", va="center", fontsize=font)
    ax.set_yticks(y, names, fontsize=font)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("score (n = images of the class)")
    title = "Per-class precision, recall and F1, sorted by F1"
    ax.set_title(title + (f"\n({absent} classes without images here are not shown)" if absent else ""))
    ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=8)  # outside, clear of bars and labels
    ax.grid(axis="x", alpha=0.3)
    return save(fig, eval_dir / "per_class", fmt=fmt)


def plot_pr_roc(eval_dir: Path, *, fmt: str = "png") -> list[Path]:
    classes, targets, _, scores = load_evaluation(eval_dir)
    present = [i for i in range(len(classes)) if 0 < (targets == i).sum() < len(targets)]
    curves = {}
    for i in present:  # the same AP and AUC as per_class.csv, from the same scikit-learn functions
        truth = targets == i
        precision, recall, _ = precision_recall_curve(truth, scores[:, i])
        fpr, tpr, _ = roc_curve(truth, scores[:, i])
        curves[i] = (recall, precision, average_precision_score(truth, scores[:, i]), fpr, tpr,
                     roc_auc_score(truth, scores[:, i]))  # fmt: skip
    written = []
    if not curves:  # every image of one class: nothing to rank against
        return written
    for kind, stem in (("pr", "pr_curves"), ("roc", "roc_curves")):
        area = 2 if kind == "pr" else 5
        shown = sorted(curves, key=lambda i: curves[i][area])[:MAX_CURVES]
        fig, ax = new_figure(labels=[classes[i] for i in shown], size=(7, 6))
        for i in shown:
            x, y = (curves[i][0], curves[i][1]) if kind == "pr" else (curves[i][3], curves[i][4])
            name = "AP" if kind == "pr" else "AUC"
            ax.plot(x, y, linewidth=1.4, drawstyle="steps-post" if kind == "pr" else "default",
                    label=f"{shorten(classes[i])} ({name} {curves[i][area]:.3f})")  # fmt: skip
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
        which = "every class" if len(shown) == len(curves) else f"the {len(shown)} lowest of {len(curves)} classes"
        ax.set_title(f"{'Precision-recall' if kind == 'pr' else 'ROC'} curves, one-vs-rest: {which}")
        ax.set_xlabel("recall" if kind == "pr" else "false positive rate")
        ax.set_ylabel("precision" if kind == "pr" else "true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left" if kind == "pr" else "lower right")
        written.append(save(fig, eval_dir / stem, fmt=fmt))
    return written
