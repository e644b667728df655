"""What cross-validation (`train --folds 5`) costs against one run, and what it tells against a single split.

    python bench/trust_folds.py                        # both parts: about 25 minutes on 2 busy cores
    python bench/trust_folds.py --parts cost           # one part: cost or spread

Parts:
- cost: on the bundled sample (138 photos, 5 classes), `foldertune train` once (the default 80/20 split) and with
  `--folds 5`, each a fresh process with an empty cache folder, in linear mode (feature cache on disk: the frozen
  backbone runs once per image, for every fold) and in fine-tune mode (--cost-epochs epochs at --cost-img-size px);
  printed: wall-clock seconds, CPU seconds of the process, and the factor (5-fold / single run) of each.
- spread: on the sample and on Fashion-MNIST (Debian's `dataset-fashion-mnist`: --fashion-per-class images per class
  of its training file, written as PNG), linear mode, --epochs epochs: the validation accuracy of single 80/20 splits
  with seeds 0 to --seeds - 1 (the default run is seed 0), against the 5-fold cross-validation of the same images
  (seed 0): mean +- sample std over the folds, min-max, and the pooled out-of-fold accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_check import fashion_folder

from foldertune.data import sample_data_path

SAMPLE = sample_data_path()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("cost", "spread"), default=["cost", "spread"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="linear mode's epochs (default: 10, train's own)")
    parser.add_argument("--cost-epochs", type=int, default=2, help="fine-tune epochs in the cost part (default: 2)")
    parser.add_argument("--cost-img-size", type=int, default=128, help="fine-tune crop in the cost part (default: 128)")
    parser.add_argument("--seeds", type=int, default=5, help="single splits to compare with (default: 5)")
    parser.add_argument("--fashion-per-class", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trust-folds-") as scratch:
        scratch = Path(scratch)
        if "cost" in args.parts:
            cost(scratch / "cost", args)
        if "spread" in args.parts:
            fashion = fashion_folder(scratch / "fashion", args.fashion_per_class)
            for name, data in (("sample", SAMPLE), (f"Fashion-MNIST ({10 * args.fashion_per_class})", fashion)):
                spread(name, data, scratch / f"spread-{data.name}", args)


def timed_train(flags: list[str], *, cache: Path, cwd: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds of `foldertune train FLAGS` in a fresh process with the cache folder `cache`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "foldertune", "train", *flags, "--quiet"], cwd=cwd,
                          env={**os.environ, "FOLDERTUNE_CACHE_DIR": str(cache), "PYTHONPATH": str(
                              Path(__file__).resolve().parents[1] / "src")},
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"foldertune train {' '.join(flags)} failed:\n{done.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cost(folder: Path, args) -> None:
    folder.mkdir(parents=True)
    print(f"cost on the sample ({SAMPLE}): one run against --folds {args.folds}, each in a fresh process with an "
          "empty cache folder")  # fmt: skip
    modes = {"linear": ["--mode", "linear", "--epochs", str(args.epochs)],
             "finetune": ["--mode", "finetune", "--epochs", str(args.cost_epochs), "--img-size",
                          str(args.cost_img_size)]}  # fmt: skip
    for mode, flags in modes.items():
        common = [str(SAMPLE), *flags, "--no-report", "--project", str(folder / "runs")]
        single = timed_train([*common, "--name", f"{mode}-single"], cache=folder / f"cache-{mode}-single", cwd=folder)
        folds = timed_train([*common, "--folds", str(args.folds), "--name", f"{mode}-folds"],
                            cache=folder / f"cache-{mode}-folds", cwd=folder)  # fmt: skip
        print(f"  {mode:<8} ({' '.join(flags)}): single run {single[0]:.1f} s wall, {single[1]:.1f} s CPU; "
              f"{args.folds} folds {folds[0]:.1f} s wall, {folds[1]:.1f} s CPU; factor {folds[0] / single[0]:.2f} "
              f"wall, {folds[1] / single[1]:.2f} CPU")  # fmt: skip


def spread(name: str, data: Path, folder: Path, args) -> None:
    import foldertune as ft

    os.environ["FOLDERTUNE_CACHE_DIR"] = str(folder / "cache")  # features computed once, for every run below
    common = {"mode": "linear", "epochs": args.epochs, "project": str(folder / "runs"), "no_report": True,
              "quiet": True}  # fmt: skip
    singles = []
    with contextlib.redirect_stdout(io.StringIO()):  # each run's epochs: only the figures below are printed
        for seed in range(args.seeds):
            run = ft.train(data, seed=seed, name=f"single-{seed}", **common)
            metrics = json.loads((run / "metrics.json").read_text())["val"]
            singles.append((metrics["accuracy"], metrics["images"]))
        run = ft.train(data, folds=args.folds, name="folds", **common)
    cv = json.loads((run / "cv.json").read_text())
    accuracy, pooled = cv["val"]["accuracy"], cv["pooled"]["overall"]
    values = np.array([value for value, _ in singles])
    print(f"{name}, linear mode, {args.epochs} epochs: validation accuracy")
    print(f"  single 80/20 split, seed 0 (the default): {values[0]:.3f} on {singles[0][1]} images")
    print(
        f"  single splits, seeds 0-{args.seeds - 1}: mean {values.mean():.3f} +- {values.std(ddof=1):.3f} "
        f"(min {values.min():.3f}, max {values.max():.3f}): " + " ".join(f"{v:.3f}" for v in values)
    )
    print(f"  {args.folds}-fold cross-validation: mean {accuracy['mean']:.3f} +- {accuracy['std']:.3f} (min "
          f"{accuracy['min']:.3f}, max {accuracy['max']:.3f}); pooled out-of-fold {pooled['accuracy']:.3f} on "
          f"{pooled['images']} images")  # fmt: skip


if __name__ == "__main__":
    main()
