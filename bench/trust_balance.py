"""Which `--balance` to default to: balanced accuracy and the worst class's recall on imbalanced training sets.

    python bench/trust_balance.py                      # the sample with one class cut, and Fashion-MNIST; 3 seeds
    python bench/trust_balance.py --seeds 0 --no-fashion

Sets (validation left balanced, so that the numbers speak of every class alike):
- sample: the bundled sample's usual 80/20 split, with the training images of one class (--rare, default
  'others') cut to 5.
- fashion: Fashion-MNIST (Debian's `dataset-fashion-mnist`), training counts falling geometrically from 300 for
  the first class to 5 for the last (ratio 60), 50 validation images per class.
Each choice of --balance (none, weights, sampler) trains a linear head (the feature cache, 20 epochs) per seed;
printed per set and choice: the mean over seeds of the balanced accuracy, of the rare (smallest) class's recall,
and of the worst class's recall, and their lowest over seeds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_check import FASHION_CLASSES, fashion_folder

from foldertune.data import sample_data_path
from foldertune.data.scan import ImageRecord, scan_folder
from foldertune.data.split import assign_splits, write_manifest
from foldertune.runs.folder import RunFolder

CHOICES = ("none", "weights", "sampler")


def sample_set(work: Path, rare: str) -> tuple[Path, str]:
    scan = scan_folder(sample_data_path(), progress=False)
    split, _ = assign_splits(scan.images, val_fraction=0.2, test_fraction=0.0, seed=0)
    kept, seen = [], 0
    for record in split:
        if record.label == rare and record.split == "train":
            seen += 1
            if seen > 5:
                continue
        kept.append(record)
    manifest = work / "sample-imbalanced.csv"
    write_manifest(manifest, kept)
    return manifest, rare


def fashion_set(work: Path) -> tuple[Path, str]:
    train_counts = np.round(300 * (5 / 300) ** (np.arange(10) / 9)).astype(int)  # 300, 191, ..., 5
    folder = fashion_folder(work / "fashion", 300 + 50)
    records = []
    for name, count in zip(FASHION_CLASSES, train_counts, strict=True):
        files = sorted((folder / name).glob("*.png"))
        records += [ImageRecord(str(path), name, "train") for path in files[:count]]
        records += [ImageRecord(str(path), name, "val") for path in files[300:350]]
    manifest = work / "fashion-imbalanced.csv"
    write_manifest(manifest, records)
    print("fashion training counts:", dict(zip(FASHION_CLASSES, train_counts.tolist(), strict=True)))
    return manifest, FASHION_CLASSES[-1]


def run_choices(name: str, manifest: Path, rare: str, work: Path, seeds: list[int]) -> list[dict]:
    import foldertune as ft

    rows = []
    for balance in CHOICES:
        for seed in seeds:
            run = ft.train(manifest=str(manifest), mode="linear", epochs=20, balance=balance, seed=seed, report=False,
                           quiet=True, workers=0, project=str(work / "runs"),
                           name=f"{name}-{balance}-{seed}")  # fmt: skip
            val = RunFolder(run).metrics()["val"]
            recalls = {row["class"]: float(row["recall"]) for row in val["per_class"]}
            row = {"data": name, "balance": balance, "seed": seed, "accuracy": val["accuracy"],
                   "balanced_accuracy": float(np.mean(list(recalls.values()))), "rare_recall": recalls[rare],
                   "worst_recall": min(recalls.values())}  # fmt: skip
            rows.append(row)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return rows


def summary(rows: list[dict]) -> None:
    print("\ndata      balance   balanced_acc (min)   rare recall (min)   worst recall (min)   accuracy")
    for name in dict.fromkeys(row["data"] for row in rows):
        for balance in CHOICES:
            mine = [row for row in rows if row["data"] == name and row["balance"] == balance]
            cells = [f"{np.mean([r[k] for r in mine]):.3f} ({min(r[k] for r in mine):.3f})"
                     for k in ("balanced_accuracy", "rare_recall", "worst_recall")]  # fmt: skip
            accuracy = np.mean([r["accuracy"] for r in mine])
            print(f"{name:9s} {balance:9s} {cells[0]:20s} {cells[1]:19s} {cells[2]:20s} {accuracy:.3f}")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rare", default="others", help="the sample's class cut to 5 training images")
    parser.add_argument("--no-fashion", action="store_true", help="the sample only")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="trust-balance-") as scratch:
        work = Path(scratch)
        rows += run_choices("sample", *sample_set(work, args.rare), work, args.seeds)
        if not args.no_fashion:
            rows += run_choices("fashion", *fashion_set(work), work, args.seeds)
    summary(rows)
    return rows


if __name__ == "__main__":
    main()
