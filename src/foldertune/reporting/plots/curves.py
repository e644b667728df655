"""Training curves from batches.csv and epochs.csv, and the overlay of several runs.

plot_loss(run)                   # run/plots/loss.png: loss per step (raw, smoothed), val loss per epoch; lr
plot_metrics(run)                # run/plots/metrics.png: val accuracy, macro P/R/F1, train accuracy per epoch
plot_compare([run_a, run_b], out)  # out/compare.png: validation curves of each run on shared axes
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foldertune.reporting.plots.common import TRAIN, VAL, new_figure, save
from foldertune.runs.folder import RunFolder


def smooth(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average with the given span (as pandas' ewm(span=...).mean(), adjusted)."""
    alpha = 2 / (span + 1)
    out = np.empty_like(values, dtype=float)
    weighted, weights = 0.0, 0.0
    for i, value in enumerate(values):
        weighted = value + (1 - alpha) * weighted
        weights = 1 + (1 - alpha) * weights
        out[i] = weighted / weights
    return out


def plot_loss(run: Path, *, fmt: str = "png") -> Path:
    folder = RunFolder(run)
    batches, epochs = folder.batches(), folder.epochs()
    steps = np.array([int(row["step"]) for row in batches])
    loss = np.array([float(row["loss"]) for row in batches])
    lr = np.array([float(row["lr"]) for row in batches])
    last_step = {int(row["epoch"]): int(row["step"]) for row in batches}  # rows come in step order
    epoch_steps = [last_step.get(int(row["epoch"]), 0) for row in epochs]

    fig, (top, bottom) = new_figure(labels=[run.name], size=(8, 6), nrows=2, sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
    top.plot(steps, loss, color=TRAIN, alpha=0.25, linewidth=0.8, label="train loss per step")
    if len(loss) > 1:
        top.plot(steps, smooth(loss, max(5, len(loss) // 20)), color=TRAIN, linewidth=1.8, label="train, smoothed")
    top.plot(epoch_steps, [float(row["val_loss"]) for row in epochs], "o-", color=VAL, label="validation, per epoch")
    top.set_ylabel("cross-entropy loss")
    top.set_title(f"Loss: {run.name}")
    top.grid(alpha=0.3)
    top.legend()
    bottom.plot(steps, lr, color="#555555")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("step")
    bottom.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    bottom.grid(alpha=0.3)
    return save(fig, folder.plots_dir / "loss", fmt=fmt)


def plot_metrics(run: Path, *, fmt: str = "png") -> Path:
    folder = RunFolder(run)
    epochs = folder.epochs()
    x = [int(row["epoch"]) for row in epochs]
    fig, ax = new_figure(labels=[run.name], size=(8, 4.5))
    for key, label, style in (
        ("val_acc", "val accuracy", "o-"),
        ("val_precision", "val precision (macro)", "s--"),
        ("val_recall", "val recall (macro)", "^--"),
        ("val_f1", "val F1 (macro)", "d-"),
        ("train_acc", "train accuracy", "x:"),
    ):
        ax.plot(x, [float(row[key]) for row in epochs], style, label=label, markersize=4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(x if len(x) <= 20 else x[:: max(1, len(x) // 20)])
    ax.set_title(f"Metrics per epoch: {run.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save(fig, folder.plots_dir / "metrics", fmt=fmt)


def plot_compare(runs: list[Path], out: Path, *, fmt: str = "png") -> Path:
    """Validation accuracy and loss per epoch of each run, overlaid."""
    names = [run.name for run in runs]
    fig, (left, right) = new_figure(labels=names, size=(12, 4.5), ncols=2)
    for run in runs:
        epochs = RunFolder(run).epochs()
        x = [int(row["epoch"]) for row in epochs]
        left.plot(x, [float(row["val_acc"]) for row in epochs], "o-", markersize=3, label=run.name)
        right.plot(x, [float(row["val_loss"]) for row in epochs], "o-", markersize=3, label=run.name)
    left.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy", ylim=(0, 1.02))
    right.set(xlabel="epoch", ylabel="validation loss", title="Validation loss")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, out / "compare", fmt=fmt)
