"""How long each figure takes for a large evaluation: 100 classes, 10,000 validation images (synthetic scores).

    python bench/plots_bench.py                      # prints one line per figure, in seconds
    python bench/plots_bench.py --classes 200 --images 20000

The evaluation folder is written as `foldertune evaluate` writes it (metrics.json, predictions.csv,
per_class.csv, scores.npy, embedding.csv), with class names that are long, Chinese or both, and real photos
from the bundled sample for the image grids. The 2-D feature map's embedding (t-SNE of at most 2,000 images)
is timed too: evaluate computes it once, and the figure only reads it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from foldertune.analysis.embedding import embed, sample_for_map
from foldertune.analysis.metrics import evaluation_report, sample_losses
from foldertune.data import sample_data_path
from foldertune.preprocessing import Preprocessing
from foldertune.reporting.plots.classification import plot_confusion, plot_per_class, plot_pr_roc
from foldertune.reporting.plots.feature_map import plot_feature_map
from foldertune.reporting.plots.gallery import plot_predictions, plot_top_losses
from foldertune.runs.tables import write_table


def synthetic_evaluation(folder: Path, classes: int, images: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    names = [f"类别{i:03d}" if i % 3 == 0 else f"a rather long class name number {i}" for i in range(classes)]
    targets = rng.integers(0, classes, images)
    logits = rng.normal(size=(images, classes)).astype(np.float32)
    logits[np.arange(images), targets] += 3.0  # about 70% right
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    features = rng.normal(size=(images, 64)).astype(np.float32) + np.eye(classes, 64)[targets % 64] * 4
    photos = sorted(str(p) for p in sample_data_path().rglob("*.webp"))
    report = evaluation_report(targets, probabilities, names)
    losses = sample_losses(targets, probabilities)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    rows = [
        {"path": photos[i % len(photos)], "true": names[targets[i]], "predicted": names[predicted[i]],
         "confidence": f"{confidence[i]:.6f}", "correct": int(targets[i] == predicted[i]), "loss": f"{losses[i]:.6f}"}
        for i in range(images)
    ]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_table(folder / "predictions.csv", list(rows[0]), rows)
    write_table(folder / "per_class.csv", list(report["per_class"][0]), report["per_class"])
    np.save(folder / "scores.npy", probabilities)
    metrics = {"classes": names, "preprocessing": Preprocessing().to_dict(), **report}
    (folder / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False), encoding="utf-8")
    started = time.perf_counter()
    chosen = sample_for_map(targets)
    coordinates, method = embed(features[chosen])
    print(f"{'embedding (' + method + f', {len(chosen)} images)':<42}{time.perf_counter() - started:8.2f} s")
    embedding = [{"path": "", "true": names[targets[i]], "predicted": names[predicted[i]], "x": x, "y": y,
                  "method": method} for i, (x, y) in zip(chosen, coordinates, strict=True)]  # fmt: skip
    write_table(folder / "embedding.csv", list(embedding[0]), embedding)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="foldertune-plots-")) / "eval"
    print(f"{args.classes} classes, {args.images} images, figures in {folder}")
    synthetic_evaluation(folder, args.classes, args.images)
    for draw in (plot_confusion, plot_per_class, plot_pr_roc, plot_predictions, plot_top_losses, plot_feature_map):
        started = time.perf_counter()
        draw(folder)
        print(f"{draw.__name__:<42}{time.perf_counter() - started:8.2f} s")


if __name__ == "__main__":
    main()
