"""A 2-D embedding of the penultimate-layer features, for the feature map of an evaluation.

    chosen = sample_for_map(targets)                         # indices: a stratified, seeded sample
    coordinates, method = embed(features[chosen], seed=0)    # (N, 2): t-SNE, or UMAP for large maps

At most MAX_POINTS images are embedded: t-SNE's time grows faster than the number of points, and a map of a
thousand or two already shows the structure. The method follows the size (measured on a 2-core CPU): exact t-SNE
up to EXACT_TSNE_POINTS (a fraction of a second for 100 points, where scikit-learn's Barnes-Hut approximation spends
seconds on thread start-up); above that, UMAP when the optional package is installed (its numba code is compiled
once into the cache folder, not in every run), else Barnes-Hut t-SNE. The map itself is drawn by
reporting/plots/feature_map.py.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from foldertune.runs.cache import cache_root

MAX_POINTS = 1500
EXACT_TSNE_POINTS = 500  # exact t-SNE costs N^2 per iteration: below this it is faster than any approximation


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
    """2-D coordinates of each row and the method's name: t-SNE, or UMAP for a large map when it is installed."""
    features = features.astype(np.float32)
    if len(features) > EXACT_TSNE_POINTS:
        umap = _umap()
        if umap is not None:
            with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": reproducible on purpose
                warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
                return umap.UMAP(n_components=2, random_state=seed).fit_transform(features), "UMAP"
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if features.shape[1] > 50 and len(features) > 50:
        features = PCA(n_components=50, random_state=seed).fit_transform(features)  # the usual t-SNE preparation
    perplexity = float(min(30, max(2, (len(features) - 1) / 3)))
    exact = len(features) <= EXACT_TSNE_POINTS
    # 500 iterations (scikit-learn's default is 1000) draw the same clusters in half the time
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", max_iter=500, random_state=seed,
                method="exact" if exact else "barnes_hut", n_jobs=1 if exact else -1)  # fmt: skip
    return tsne.fit_transform(features), "t-SNE"


def _umap():
    """The umap module, with numba's compiled code kept in the cache folder; None when it is not installed."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_root() / "numba"))  # read when numba is first imported
    try:
        import umap
    except ImportError:
        return None
    return umap
