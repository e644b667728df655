"""A 2-D embedding of the penultimate-layer features, for the feature map of an evaluation.

    chosen = sample_for_map(targets)                         # indices: a stratified, seeded sample
    coordinates, method = embed(features[chosen], seed=0)    # (N, 2) by UMAP when installed, else t-SNE

At most MAX_POINTS images are embedded: t-SNE's time grows faster than the number of points, and a map of a
thousand or two already shows the structure. The map itself is drawn by reporting/plots/feature_map.py.
"""

from __future__ import annotations

import warnings

import numpy as np

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
        with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": reproducible on purpose
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            return UMAP(n_components=2, random_state=seed).fit_transform(features), "UMAP"
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if features.shape[1] > 50 and len(features) > 50:
        features = PCA(n_components=50, random_state=seed).fit_transform(features)  # the usual t-SNE preparation
    perplexity = float(min(30, max(2, (len(features) - 1) / 3)))
    # 500 iterations (scikit-learn's default is 1000) draw the same clusters in half the time
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", max_iter=500, random_state=seed, n_jobs=-1)
    return tsne.fit_transform(features), "t-SNE"
