"""The reliability diagram of an evaluation: how often the network is right at each level of its confidence.

    plot_reliability(eval_dir)   # reliability.png: accuracy against confidence, before and after the temperature

It reads the reliability bins that evaluation wrote to metrics.json ("calibration"). A calibrated model's bars
reach the diagonal: of the images it gives 0.8, it gets 80% right.
"""

from __future__ import annotations

from pathlib import Path

from foldertune.reporting.plots.common import RIGHT, VAL, new_figure, save
from foldertune.runs.folder import EvalFolder


def plot_reliability(eval_dir: Path, *, fmt: str = "png") -> Path | None:
    """reliability.png, side by side before and after temperature scaling; None for an evaluation without it."""
    metrics = EvalFolder(eval_dir).metrics()
    calibration = metrics.get("calibration")
    if not calibration:
        return None
    fig, axes = new_figure(labels=metrics.get("classes", []), size=(9, 4), ncols=2, sharey=True)
    panels = (("before", 1.0, calibration["ece_before"], VAL), ("after", calibration["temperature"], calibration["ece"],
              RIGHT))  # fmt: skip
    for ax, (which, temperature, ece, colour) in zip(axes, panels, strict=True):
        bins = [row for row in calibration["bins"][which] if row["images"]]
        width = bins[0]["high"] - bins[0]["low"] if bins else 1 / 15
        ax.bar([row["low"] for row in bins], [row["accuracy"] for row in bins], width=width, align="edge",
               color=colour, alpha=0.75, edgecolor="white", label="accuracy in the bin")  # fmt: skip
        ax.plot([row["confidence"] for row in bins], [row["accuracy"] for row in bins], "k.", markersize=4)
        ax.plot([0, 1], [0, 1], "--", color="#555", linewidth=1, label="perfect calibration")
        for row in bins:
            ax.annotate(str(row["images"]), (row["low"] + width / 2, row["accuracy"]), ha="center", va="bottom",
                        fontsize=7, color="#333")  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("confidence (top probability)")
        ax.set_title(f"{which}: temperature {temperature:.2f}, ECE {ece:.3f}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Reliability on {sum(row['images'] for row in calibration['bins']['after'])} images "
                 "(numbers: images per bin)", fontsize=11)  # fmt: skip
    return save(fig, Path(eval_dir) / "reliability", fmt=fmt)
