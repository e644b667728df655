"""A 2-D map of the penultimate-layer features: do the classes form separate clusters?

    coordinates, method = embed(features, seed=0)   # (N, 2) by UMAP when installed, else t-SNE (scikit-learn)
    plot_feature_map(eval_dir)                      # feature_map.png from embedding.csv, mistakes marked x

At most MAX_POINTS images are embedded (a stratified sample, seeded): t-SNE's time grows faster than the number
of points, and a map of a thousand or two already shows the structure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from foldertune.reporting.plots.common import WRONG, new_figure, save, shorten
from foldertune.runs.tables import read_table

MAX_POINTS = 1500


def sample_for_map(targets: np.ndarray, seed: int = 0, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `limit` samples, the same share of every class."""
    if len(targets) <= limit:
        return np.arange(len(targets))
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(members, size=max(1, round(len(members) * limit / len(targets))), replace=False)
        for members in (np.flatnonzero(targets == label) for label in np.unique(targets))
    ]
    return np.sort(np.concatenate(chosen))


def embed(features: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of each row and the method's name; UMAP when the optional package is there."""
    features = features.astype(np.float32)
    try:
        from umap import UMAP
    except ImportError:
        UMAP = None
    if UMAP is not None and len(features) > 15:  # UMAP wants a neighbourhood of 15 points
        return UMAP(n_components=2, random_state=seed).fit_transform(features), "UMAP"
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if features.shape[1] > 50 and len(features) > 50:
        features = PCA(n_components=50, random_state=seed).fit_transform(features)  # the usual t-SNE preparation
    perplexity = float(min(30, max(2, (len(features) - 1) / 3)))
    # 500 iterations (scikit-learn's default is 1000) draw the same clusters in half the time
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", max_iter=500, random_state=seed, n_jobs=-1)
    return tsne.fit_transform(features), "t-SNE"


def plot_feature_map(eval_dir: Path, *, fmt: str = "png") -> Path | None:
    path = eval_dir / "embedding.csv"
    if not path.exists():
        return None
    rows = read_table(path)
    classes = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))["classes"]
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
