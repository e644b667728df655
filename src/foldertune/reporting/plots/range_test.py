"""The learning-rate range test's curve: smoothed loss against learning rate, the suggestions marked.

plot_lr_find(Path("runs/lr-find-mobilenet_v2-linear.csv"), {"valley": 2.3e-3})   # -> the .png beside it
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FuncFormatter, NullFormatter

from foldertune.reporting.plots.common import new_figure, save
from foldertune.runs.tables import read_table

MARK_COLOURS = {"valley": "tab:red", "steep": "tab:orange", "minimum/10": "tab:green", "default": "tab:gray"}


def plot_lr_find(table: Path, marks: dict[str, float], *, fmt: str = "png") -> Path:
    """`table`'s curve (lr, loss, smoothed), with a vertical line per named rate in `marks`; saved beside it."""
    rows = read_table(table)
    lrs = [float(row["lr"]) for row in rows]
    fig, ax = new_figure(size=(7, 4))
    ax.plot(lrs, [float(row["loss"]) for row in rows], color="tab:blue", alpha=0.25, linewidth=0.8, label="loss")
    smoothed = [float(row["smoothed"]) for row in rows]
    ax.plot(lrs, smoothed, color="tab:blue", linewidth=1.8, label="smoothed loss")
    for name, value in marks.items():
        ax.axvline(value, color=MARK_COLOURS.get(name, "black"), linestyle="--", linewidth=1.2,
                   label=f"{name} {value:.1e}")  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0e}"))  # plain text: no mathtext needed
    ax.xaxis.set_minor_formatter(NullFormatter())
    low = min(min(smoothed), min(float(row["loss"]) for row in rows))
    high = max(smoothed[: max(1, len(smoothed) // 2)])  # the first half's level; a divergence above it is clipped
    ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.5 * (high - low + 1e-9))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate range test ({len(rows)} steps)")
    ax.legend(fontsize=8)
    return save(fig, table.with_suffix(""), fmt=fmt)
