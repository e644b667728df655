"""How well `foldertune check --labels` finds wrong labels and near-duplicates, and how fast it is.

    python bench/label_check.py                          # every part: about 20 minutes on 2 cores
    python bench/label_check.py --parts labels near      # some parts only: labels, near, speed, scale

Parts:
- labels: on the bundled sample (138 photos, 5 classes) and on Fashion-MNIST (Debian's `dataset-fashion-mnist`,
  `apt install dataset-fashion-mnist`: --fashion-per-class images per class of its training file, written as PNG),
  a stratified 80/20 split; then 5%, 10% and 20% of the training labels are flipped to another class (seeded;
  --sample-draws / --fashion-draws draws of the flips, pooled: one draw of 11 flips on the sample moves recall by
  0.1 or more). The label check runs on the whole manifest; printed: precision and recall of the flagged images
  against the flipped ones, and (first draw) the validation accuracy (true labels, the validation split untouched)
  of a linear head trained with `foldertune train --mode linear` on the noisy labels against one trained on the
  --fix-manifest output.
- near: 30 sample photos, each saved as half size (PNG), JPEG quality 60, a 10% centre crop (5% off each side) and
  mirrored; printed: recall per kind for the perceptual hash, the feature cosine and their union, and the number
  of pairs of distinct photos flagged among the 138 photos and 120 copies.
- speed: `foldertune check DIR --labels` on --speed-images Fashion-MNIST PNGs (28x28, so decoding is cheap and the
  backbone dominates), a fresh process each time: cold (empty feature cache), then warm (the same command again).
- scale: the near-duplicate search on 100,000 synthetic feature vectors (1280 dimensions, standard normal, 100
  planted near copies) and 100,000 random 64-bit hashes (100 planted copies 0-4 bits away): seconds, peak memory
  of the search (tracemalloc), planted pairs found, other pairs found.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from foldertune.data import sample_data_path
from foldertune.data.scan import ImageRecord, scan_folder
from foldertune.data.split import assign_splits, write_manifest
from foldertune.runs.tables import read_table

FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
RATES = (0.05, 0.10, 0.20)


def fashion_folder(root: Path, per_class: int, *, skip: int = 0) -> Path:
    """`per_class` Fashion-MNIST training images of each class as PNG files in class folders (after `skip` each)."""
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        sys.exit("Fashion-MNIST is missing: apt install dataset-fashion-mnist")
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    for label, name in enumerate(FASHION_CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(labels == label)[skip : skip + per_class]:
            Image.fromarray(images[index]).save(folder / f"{index:05d}.png")
    return root


def flipped(records: list[ImageRecord], rate: float, seed: int) -> tuple[list[ImageRecord], set[str]]:
    """The records with `rate` of the training labels changed to another class, and the paths changed."""
    rng = np.random.default_rng(seed)
    classes = sorted({record.label for record in records})
    train = [i for i, record in enumerate(records) if record.split == "train"]
    chosen = set(rng.choice(train, round(rate * len(train)), replace=False).tolist())
    result, changed = [], set()
    for i, record in enumerate(records):
        if i in chosen:
            label = str(rng.choice([c for c in classes if c != record.label]))
            result.append(ImageRecord(record.path, label, record.split))
            changed.add(record.path)
        else:
            result.append(record)
    return result, changed


def label_part(name: str, data: Path, work: Path, draws: int) -> list[dict]:
    """Precision and recall of the flagged images, pooled over `draws` draws of the flips per rate."""
    from foldertune.data.check import check_source
    from foldertune.training.label_check import check_labels, label_check_options

    scan = scan_folder(data, progress=False)
    clean, _ = assign_splits(scan.images, val_fraction=0.2, test_fraction=0.0, seed=0)
    rows = []
    for rate in RATES:
        hits = flagged_count = flipped_count = 0
        seconds = []
        for draw in range(draws):
            noisy, changed = flipped(clean, rate, seed=round(rate * 1000) + draw)
            tag = f"{name}-{round(rate * 100)}"
            manifest = work / f"{tag}-noisy.csv"
            write_manifest(manifest, noisy)
            started = time.perf_counter()
            report = check_labels(check_source(manifest, decode="draft", progress=False), label_check_options(),
                                  progress=False, log=lambda *_: None)  # fmt: skip
            seconds.append(time.perf_counter() - started)
            flagged = {p for p, found in report.findings.items() if any(f.kind == "label-issue" for f in found)}
            hits += len(flagged & changed)
            flagged_count += len(flagged)
            flipped_count += len(changed)
            if draw == 0:  # the accuracy of training on each manifest, for the first draw only
                accuracy = fixed_accuracy(report, noisy, manifest, work, tag)
        rows.append({
            "data": name, "images": len(clean), "flipped": flipped_count, "rate": rate, "flagged": flagged_count,
            "draws": draws, "precision": hits / max(1, flagged_count), "recall": hits / max(1, flipped_count),
            "val_acc_noisy": accuracy["noisy"], "val_acc_fixed": accuracy["fixed"], "check_s": float(np.mean(seconds)),
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def fixed_accuracy(report, noisy: list[ImageRecord], manifest: Path, work: Path, tag: str) -> dict[str, float]:
    """Validation accuracy (the validation split untouched) of linear heads trained on the noisy labels and on the
    label check's --fix-manifest output."""
    import foldertune as ft
    from foldertune.runs.folder import RunFolder
    from foldertune.training.label_check import write_fix_manifest

    fixed = work / f"{tag}-fixed.csv"
    write_fix_manifest(report, fixed, relabel=False)
    kept = {row["path"] for row in read_table(fixed)}
    untouched_val = [r for r in noisy if r.split == "val"]  # the validation split stays as it was
    write_manifest(fixed, [r for r in noisy if r.split == "train" and r.path in kept] + untouched_val)
    accuracy = {}
    for kind, path in (("noisy", manifest), ("fixed", fixed)):
        run = ft.train(manifest=str(path), mode="linear", epochs=20, report=False, quiet=True, workers=0,
                       project=str(work / "runs"), name=f"{tag}-{kind}")  # fmt: skip
        accuracy[kind] = RunFolder(run).metrics()["val"]["accuracy"]
    return accuracy


def near_part(work: Path, fashion_per_class: int) -> None:
    from foldertune.data.near_duplicates import embedding_pairs, find_near_pairs, hash_pairs, perceptual_hashes
    from foldertune.training.label_check import _features, label_check_options

    def confirmed(paths: list[str], hashes: np.ndarray) -> set[tuple[int, int]]:
        index = {path: k for k, path in enumerate(paths)}
        return {(index[p.first], index[p.second]) for p in find_near_pairs(paths, hashes=hashes, progress=False)}

    originals = [record.path for record in scan_folder(sample_data_path(), progress=False).images]
    folder = work / "near"
    folder.mkdir(exist_ok=True)
    copies: dict[str, list[tuple[int, str]]] = {"half": [], "jpeg60": [], "crop10": [], "mirror": []}
    chosen = np.random.default_rng(0).choice(len(originals), 30, replace=False).tolist()
    for i in chosen:
        photo = Image.open(originals[i]).convert("RGB")
        w, h = photo.size
        variants = {
            "half": (photo.resize((w // 2, h // 2), Image.Resampling.LANCZOS), "png"),
            "jpeg60": (photo, "jpg"),
            "crop10": (photo.crop((w // 20, h // 20, w - w // 20, h - h // 20)), "png"),
            "mirror": (ImageOps.mirror(photo), "png"),
        }
        for kind, (image, ext) in variants.items():
            target = folder / f"{i:03d}-{kind}.{ext}"
            image.save(target, quality=60)
            copies[kind].append((i, str(target)))
    paths = originals + [path for items in copies.values() for _, path in items]
    family = list(range(len(originals))) + [i for items in copies.values() for i, _ in items]
    hashes = perceptual_hashes(paths, progress=False)
    features, _ = _features(paths, label_check_options(), progress=False, log=lambda *_: None)
    found = {
        "hash": confirmed(paths, hashes),
        "cosine": {(i, j) for i, j, _ in embedding_pairs(features)},
    }
    found["union"] = found["hash"] | found["cosine"]
    position = {path: k for k, path in enumerate(paths)}
    print(f"\nnear-duplicates: 30 sample photos x 4 kinds of copy, among {len(originals)} photos")
    print(f"{'kind':<8}" + "".join(f"{method:>10}" for method in found))
    for kind, items in copies.items():
        pairs = [tuple(sorted((i, position[path]))) for i, path in items]
        print(f"{kind:<8}" + "".join(f"{sum(p in f for p in pairs) / len(pairs):>10.2f}" for f in found.values()))
    print(f"{'distinct':<8}" + "".join(f"{sum(family[i] != family[j] for i, j in f):>10d}" for f in found.values()))
    garments = [
        record.path
        for record in scan_folder(fashion_folder(work / "fashion", fashion_per_class), progress=False).images
    ]
    features, _ = _features(garments, label_check_options(), progress=False, log=lambda *_: None)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    bare = sum(int((unit[i + 1 :] @ unit[i] >= 0.9).sum()) for i in range(len(unit)))
    hashes = perceptual_hashes(garments, progress=False)
    print(f"Fashion-MNIST, {len(garments)} distinct images: feature cosine >= 0.9 alone pairs {bare}, the cosine "
          f"search {len(embedding_pairs(features))}; pHash within 4 bits {len(hash_pairs(hashes))}, confirmed by the "
          f"finer hash {len(confirmed(garments, hashes))}")  # fmt: skip


def speed_part(work: Path, images: int) -> None:
    data = fashion_folder(work / "fashion-speed", images // 10, skip=1000)
    cache = work / "speed-cache"
    shutil.rmtree(cache, ignore_errors=True)
    environment = {**os.environ, "FOLDERTUNE_CACHE_DIR": str(cache), "PYTHONPATH": str(Path(sys.path[0]))}
    print(f"\ncheck --labels on {images} Fashion-MNIST PNGs (28x28), {os.cpu_count()} CPU cores", flush=True)
    for run in ("cold", "warm"):
        command = [sys.executable, "-m", "foldertune", "check", str(data), "--labels", "--quiet", "--force",
                   "--out", str(work / "speed-check.csv")]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=environment)
        seconds = time.perf_counter() - started
        about = next((line for line in done.stdout.splitlines() if line.startswith("label check:")), done.stderr[-300:])
        print(f"{run}: {seconds:.1f} s ({images / seconds:.0f} images/s), exit {done.returncode}; {about}", flush=True)


def scale_part(count: int) -> None:
    from foldertune.data.near_duplicates import embedding_pairs, hash_pairs

    rng = np.random.default_rng(0)
    features = rng.standard_normal((count, 1280), dtype=np.float32)
    planted = {(i, count - 1 - i) for i in range(100)}
    for i, j in planted:
        features[j] = features[i] + rng.normal(scale=0.2, size=1280).astype(np.float32)  # cosine about 0.98
    hashes = rng.integers(0, 2**63, size=(count, 2), dtype=np.int64).astype(np.uint64)
    for i, j in planted:
        flip = rng.choice(64, rng.integers(0, 5), replace=False)
        hashes[j, 0] = hashes[i, 0] ^ np.uint64(sum(1 << int(b) for b in flip))
    print(f"\nnear-duplicate search on {count:,} images (features: {features.nbytes / 2**20:.0f} MiB)", flush=True)
    for name, search in (("feature cosine", lambda: embedding_pairs(features)),
                         ("perceptual hash", lambda: hash_pairs(hashes))):  # fmt: skip
        tracemalloc.start()
        started = time.perf_counter()
        pairs = {(i, j) for i, j, _ in search()}
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"{name}: {seconds:.1f} s, peak {peak:.0f} MiB, planted found {len(planted & pairs)}/100, "
              f"others {len(pairs - planted)}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["labels", "near", "speed", "scale"])
    parser.add_argument("--work", default="/tmp/foldertune-label-bench", help="scratch folder (replaced)")
    parser.add_argument("--fashion-per-class", type=int, default=300, help="Fashion-MNIST images per class (labels)")
    parser.add_argument("--sample-draws", type=int, default=8, help="draws of the flipped labels on the sample")
    parser.add_argument("--fashion-draws", type=int, default=3, help="draws of the flipped labels on Fashion-MNIST")
    parser.add_argument("--speed-images", type=int, default=5000)
    parser.add_argument("--scale", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ.setdefault("FOLDERTUNE_CACHE_DIR", str(work / "cache"))
    if "labels" in args.parts:
        rows = label_part("sample", sample_data_path(), work, args.sample_draws)
        fashion = fashion_folder(work / "fashion", args.fashion_per_class)
        rows += label_part("fashion-mnist", fashion, work, args.fashion_draws)
        print(
            "\n| data | images | flip rate | draws | flipped (all draws) | flagged | precision | recall | "
            "val acc, noisy labels (draw 1) | val acc, fix manifest (draw 1) | check s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|"
        )
        for r in rows:
            print(f"| {r['data']} | {r['images']} | {r['rate']:.0%} | {r['draws']} | {r['flipped']} | {r['flagged']} | "
                  f"{r['precision']:.2f} | {r['recall']:.2f} | {r['val_acc_noisy']:.3f} | {r['val_acc_fixed']:.3f} | "
                  f"{r['check_s']:.1f} |")  # fmt: skip
    if "near" in args.parts:
        near_part(work, args.fashion_per_class)
    if "speed" in args.parts:
        speed_part(work, args.speed_images)
    if "scale" in args.parts:
        scale_part(args.scale)


if __name__ == "__main__":
    main()
