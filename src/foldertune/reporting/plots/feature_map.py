"""The 2-D map of the penultimate-layer features: do the classes form separate clusters?

plot_feature_map(eval_dir)      # feature_map.png from embedding.csv (see analysis/embedding.py), mistakes marked x
"""

from __future__ import annotations

from pathlib import Path

from foldertune.reporting.plots.common import WRONG, new_figure, save, shorten
from foldertune.runs.folder import EvalFolder
from foldertune.runs.tables import read_table


def plot_feature_map(eval_dir: Path, *, fmt: str = "png") -> Path | None:
    folder = EvalFolder(eval_dir)
    if not folder.embedding_file.exists():
        return None
    rows = read_table(folder.embedding_file)
    classes = folder.metrics()["classes"]
    method = rows[0]["method"] if rows else "t-SNE"
    fig, ax = new_figure(labels=classes, size=(8.5, 7))
    colours = _colours(len(classes))
    for index, name in enumerate(classes):
        members = [row for row in rows if row["true"] == name]
        if members:
            ax.scatter([float(r["x"]) for r in members], [float(r["y"]) for r in members], s=14,
                       color=colours[index], label=shorten(name, 20), alpha=0.8)  # fmt: skip
    wrong = [row for row in rows if row["true"] != row["predicted"]]
    if wrong:
        ax.scatter([float(r["x"]) for r in wrong], [float(r["y"]) for r in wrong], s=60, marker="x",
                   color=WRONG, linewidths=1.5, label="misclassified")  # fmt: skip
    ax.set_title(f"{method} map of the penultimate features ({len(rows)} images)")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) <= 30:
        ax.legend(fontsize=7, loc="best", markerscale=1.2)
    return save(fig, eval_dir / "feature_map", fmt=fmt)


def _colours(count: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20" if count <= 20 else "turbo"]
    return [cmap(i if count <= 20 else i / max(1, count - 1)) for i in range(count)]
