"""How well each out-of-distribution score tells a class the model never saw from the classes it learned.

    python bench/trust_unknown.py              # the sample and Fashion-MNIST (linear), each class held out in turn
    python bench/trust_unknown.py --finetune   # also the sample in finetune mode (3 epochs)
    python bench/trust_unknown.py --held-out 1 --no-fashion   # one held-out class of the sample only
    python bench/trust_unknown.py --reference-sizes 100,200,400 --fashion-per-class 250   # smaller references

For each held-out class: a linear head (`foldertune train --mode linear`, the feature cache, 20 epochs) is trained
on the other classes (their usual 80/20 split); then every photo of the held-out class ("outside") is scored
against the held-in validation photos ("inside"). Printed: the AUROC of each score (1.0: every outside photo
scores above every inside one; 0.5: chance), per held-out class, then the mean and the worst over classes.

Scores (higher = less like the training classes): 1 - max probability (the baseline), the energy score
(-logsumexp of the logits), the mean cosine distance to the k nearest training features (k = 1, 3, 10, against
the class-balanced float16 reference the run stores in best.pt), the Mahalanobis distance to the nearest class
(L2-normalised features, shrunk shared covariance), each distance plus the energy in units of their spreads over
the training images; "mahalanobis, held-out scale, + energy": the same sum with the distance in units of its
spread over reference rows held out of the class statistics (5 folds); "shipped" is the run's own `unknown_score`
(Mahalanobis + energy); "shipped, reference N" (--reference-sizes) is the same score from a class-balanced sample
of N of the reference's rows, as a run with REFERENCE_LIMIT = N would store.
Fashion-MNIST: Debian's `dataset-fashion-mnist`, --fashion-per-class images per class.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_check import fashion_folder

from foldertune.data import sample_data_path
from foldertune.data.scan import scan_folder
from foldertune.data.split import assign_splits, write_manifest
from foldertune.deploy.onnx_classifier import softmax
from foldertune.inference.unknown import (
    LABELS_KEY,
    auroc,
    class_statistics,
    energy_score,
    knn_distance,
    mahalanobis_distance,
    max_probability_score,
    reference_scale,
    unknown_scores,
)
from foldertune.models.build import head_of
from foldertune.runs.checkpoint import load_checkpoint
from foldertune.training.unknown_reference import reference_sample

SCORES = (
    "1 - max probability",
    "energy",
    "knn k=1",
    "knn k=3",
    "knn k=10",
    "knn k=3 + energy",
    "mahalanobis",
    "mahalanobis, held-out scale, + energy",
    "shipped",
)


def standardised(values: np.ndarray, reference_values: np.ndarray) -> np.ndarray:
    return (values - reference_values.mean()) / max(reference_values.std(), 1e-12)


def held_out_distances(reference: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each reference row's distance to the class statistics of the other folds' rows: what a new image of a known
    class gets (a row's distance to statistics that include it is far smaller when there are few rows in many
    dimensions)."""
    labels = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[order] = np.arange(len(labels)) % folds
    out = np.empty(len(labels))
    for fold in range(folds):
        held, kept = fold_of == fold, fold_of != fold
        if not held.any() or len(np.unique(labels[kept])) == 0:
            continue
        means, precision = class_statistics(reference[kept], labels[kept])
        out[held] = mahalanobis_distance(reference[held], means, precision)
    return out


def leave_one_out_knn(reference: np.ndarray, k: int) -> np.ndarray:
    """Each reference row's distance to its k nearest other rows."""
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return 1.0 - np.sort(similarity, axis=1)[:, -k:].mean(axis=1)


def scores_of(classifier, features: np.ndarray, reference_sizes: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Every candidate score of images whose head inputs are `features` (linear mode: the head decides the rest)."""
    head = head_of(classifier.model, classifier.backbone)
    with torch.no_grad():
        logits = head(torch.from_numpy(features).to(classifier.runtime.device)).float().cpu().numpy()
    reference = classifier.reference  # what the run stored: class-balanced, float16
    with torch.no_grad():
        reference_logits = head(torch.from_numpy(reference).to(classifier.runtime.device)).float().cpu().numpy()
    combined = standardised(knn_distance(features, reference, k=3), leave_one_out_knn(reference, 3)) + standardised(
        energy_score(logits), energy_score(reference_logits)
    )
    held_out = held_out_distances(reference, classifier.labels)
    distance = mahalanobis_distance(features, classifier.means, classifier.precision)
    cross_fitted = standardised(distance, held_out) + standardised(energy_score(logits), energy_score(reference_logits))
    return {
        "mahalanobis, held-out scale, + energy": cross_fitted,
        "knn k=3 + energy": combined,
        "mahalanobis": mahalanobis_distance(features, classifier.means, classifier.precision),
        "1 - max probability": max_probability_score(softmax(logits)),
        "energy": energy_score(logits),
        "knn k=1": knn_distance(features, reference, k=1),
        "knn k=3": knn_distance(features, reference, k=3),
        "knn k=10": knn_distance(features, reference, k=10),
        "shipped": classifier.unknown_scores(logits, features),
        **{
            f"shipped, reference {size}": smaller_reference_scores(classifier, logits, features, reference_logits, size)
            for size in reference_sizes
        },
    }


def smaller_reference_scores(classifier, logits, features, reference_logits, size: int) -> np.ndarray:
    """The shipped score against a class-balanced sample of `size` of the stored reference's rows."""
    rows = reference_sample(classifier.labels.tolist(), limit=size)
    reference, labels = classifier.reference[rows].astype(np.float32), classifier.labels[rows]
    means, precision = class_statistics(reference, labels)
    scale = reference_scale(reference, reference_logits[rows], means, precision)
    return unknown_scores(logits, features, means, precision, scale)


def all_features(classifier, paths: list[str]) -> dict[str, np.ndarray]:
    """Head inputs of every image: the frozen backbone's features, the same for every linear run."""
    found = {}
    for chunk, errors, images in classifier.load_batches([Path(p) for p in paths], progress=False):
        _, _, features = classifier.outputs(images)
        good = [str(path) for path, error in zip(chunk, errors, strict=True) if error is None]
        found.update(zip(good, features, strict=True))
    return found


def held_out_part(
    name: str, data: Path, work: Path, held_out: int | None, mode: str = "linear", reference_sizes: tuple[int, ...] = ()
) -> list[dict]:
    import foldertune as ft

    scan = scan_folder(data, progress=False)
    classes = sorted({record.label for record in scan.images})
    rows, features = [], None
    for left_out in classes[:held_out] if held_out else classes:
        kept = [record for record in scan.images if record.label != left_out]
        split, _ = assign_splits(kept, val_fraction=0.2, test_fraction=0.0, seed=0)
        manifest = work / f"{name}-without-{left_out}.csv"
        write_manifest(manifest, split)
        started = time.perf_counter()
        epochs = 20 if mode == "linear" else 3
        run = ft.train(manifest=str(manifest), mode=mode, epochs=epochs, report=False, quiet=True, workers=0,
                       project=str(work / "runs"), name=f"{name}-without-{left_out}")  # fmt: skip
        classifier = ft.load(run, device="cpu")
        classifier.labels = load_checkpoint(Path(run) / "best.pt")[LABELS_KEY].numpy()  # the reference's classes
        if features is None or mode != "linear":  # a finetuned backbone has features of its own
            features = all_features(classifier, [record.path for record in scan.images])
        inside_features = np.stack([features[r.path] for r in split if r.split == "val"])
        inside = scores_of(classifier, inside_features, reference_sizes)
        outside_features = np.stack([features[r.path] for r in scan.images if r.label == left_out])
        outside = scores_of(classifier, outside_features, reference_sizes)
        row = {"data": name, "held_out": left_out, "inside": len(inside["energy"]), "outside": len(outside["energy"]),
               "reference": len(classifier.reference)}  # fmt: skip
        row.update({score: auroc(inside[score], outside[score]) for score in inside})
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(f"{name:8s} without {left_out:12s} (reference {row['reference']}) "
              + "  ".join(f"{s} {row[s]:.3f}" for s in inside), flush=True)  # fmt: skip
    return rows


def summary(rows: list[dict]) -> None:
    for name in sorted({row["data"] for row in rows}):
        mine = [row for row in rows if row["data"] == name]
        print(f"\n{name}: AUROC over {len(mine)} held-out classes (mean, worst)")
        for score in [key for key in mine[0] if key in SCORES or key.startswith("shipped, ")]:
            values = [row[score] for row in mine]
            print(f"  {score:24s} {np.mean(values):.3f}  {np.min(values):.3f}")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, metavar="N", help="hold out only the first N classes in turn")
    parser.add_argument("--no-fashion", action="store_true", help="the sample only")
    parser.add_argument("--finetune", action="store_true", help="also the sample in finetune mode (3 epochs)")
    parser.add_argument("--fashion-per-class", type=int, default=100, metavar="N")
    parser.add_argument("--reference-sizes", default="", metavar="N,N", help="also the shipped score from this many "
                        "of the reference's rows (class-balanced), e.g. 100,200,400")  # fmt: skip
    args = parser.parse_args(argv)
    sizes = tuple(int(size) for size in args.reference_sizes.split(",") if size)
    rows = []
    with tempfile.TemporaryDirectory(prefix="trust-unknown-") as scratch:
        work = Path(scratch)
        rows += held_out_part("sample", sample_data_path(), work, args.held_out, reference_sizes=sizes)
        if args.finetune:
            rows += held_out_part("sample-finetune", sample_data_path(), work, args.held_out, mode="finetune",
                                  reference_sizes=sizes)  # fmt: skip
        if not args.no_fashion:
            fashion = fashion_folder(work / "fashion", args.fashion_per_class)
            rows += held_out_part("fashion", fashion, work, args.held_out, reference_sizes=sizes)
    summary(rows)
    return rows


if __name__ == "__main__":
    main()
