"""Interval widths and calibration (ECE before and after the temperature) on the sample and Fashion-MNIST.

    python bench/trust.py --parts intervals                          # through the bench's runner
    python bench/trust_intervals.py --workdir /tmp/w                 # alone
    python bench/trust_intervals.py --workdir /tmp/w --fashion-per-class 300 --modes linear finetune

For each data set (the bundled sample: 138 photos, 5 classes; Fashion-MNIST: --fashion-per-class training images of
each of its 10 classes, as PNG) and each --modes, two runs of `foldertune train` (mobilenet_v2, pretrained):

- the default split (20% validation): the 95% interval of accuracy (Wilson), balanced accuracy and macro F1
  (bootstrap over images) on the validation split, and their widths;
- 20% validation and 20% test: the temperature fitted on the validation split, and the expected calibration error
  (15 bins) and log loss before and after it, on the validation split it was fitted on and on the held-out test split.

Linear mode trains the head on the frozen backbone's cached features, so the second run of a data set costs little.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))


def train(data: Path, project: Path, name: str, mode: str, *, img_size: int, epochs: int, test: float) -> dict:
    """One run of `foldertune train`, quietly (in this process); returns its metrics.json per split, with the log
    loss before and after the temperature (`nll_before`, `nll`) from the split's evaluation folder."""
    from foldertune.config import RunConfig
    from foldertune.training.fit import fit

    cfg = RunConfig.from_flat(data=str(data), mode=mode, epochs=epochs, img_size=img_size, test=test,
                              project=str(project), name=name, report=False)  # fmt: skip
    run = fit(cfg, quiet=True, log=lambda *_: None)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    for split in ("val", "test"):
        if split in metrics:
            evaluation = json.loads((run / "eval" / split / "metrics.json").read_text(encoding="utf-8"))
            metrics[split].update({key: evaluation["calibration"][key] for key in ("nll", "nll_before")})
    return metrics


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="an empty scratch folder")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer images and epochs")
    parser.add_argument("--fashion-per-class", type=int, default=100, help="Fashion-MNIST images per class")
    parser.add_argument("--modes", nargs="+", default=["linear"], choices=["linear", "finetune"])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (finetune: at most 5)")
    args, _ = parser.parse_known_args(argv)
    from label_check import fashion_folder

    from foldertune.data import sample_data_path

    per_class = 20 if args.quick else args.fashion_per_class
    epochs = 2 if args.quick else args.epochs
    datasets = {
        "sample": (sample_data_path(), 224),
        "fashion-mnist": (fashion_folder(args.workdir / "fashion", per_class), 112),  # 28 px images: 112 is plenty
    }
    widths, calibration = [], []
    for label, (data, img_size) in datasets.items():
        for mode in args.modes:
            run_epochs = min(epochs, 5) if mode == "finetune" else epochs
            started = time.perf_counter()
            plain = train(data, args.workdir / "runs", f"{label}-{mode}", mode, img_size=img_size,
                          epochs=run_epochs, test=0.0)["val"]  # fmt: skip
            held = train(data, args.workdir / "runs", f"{label}-{mode}-test", mode, img_size=img_size,
                         epochs=run_epochs, test=0.2)  # fmt: skip
            seconds = time.perf_counter() - started
            widths.append((label, mode, plain))
            calibration.append((label, mode, held, seconds))
            print(f"  {label} {mode}: --img-size {img_size} --epochs {run_epochs}, two runs in {seconds:.0f} s",
                  flush=True)  # fmt: skip

    print("\n95% intervals on the validation split (default split: --val 0.2)")
    print(f"{'data':<14} {'mode':<9} {'images':>6}  {'accuracy':<22} {'balanced accuracy':<22} {'macro F1':<22}")
    for label, mode, val in widths:
        cells = [
            f"{val[key]:.3f} {val[key + '_low']:.2f}-{val[key + '_high']:.2f} "
            f"({val[key + '_high'] - val[key + '_low']:.2f})"
            for key in ("accuracy", "balanced_accuracy", "macro_f1")
        ]
        print(f"{label:<14} {mode:<9} {val['images']:>6}  " + " ".join(f"{cell:<22}" for cell in cells))
    print("(each cell: score, 95% interval, (its width))")

    print("\ncalibration: the temperature fitted on the validation split (--val 0.2 --test 0.2)")
    print(f"{'data':<14} {'mode':<9} {'measured on':<16} {'images':>6} {'T':>6}  {'ECE before':>10} {'ECE after':>10}"
          f"  {'NLL before':>10} {'NLL after':>10}")  # fmt: skip
    for label, mode, metrics, _ in calibration:
        for split, words in (("val", "val (fitted)"), ("test", "test (held out)")):
            result = metrics[split]
            nll_before, nll_after = result["nll_before"], result["nll"]
            print(
                f"{label:<14} {mode:<9} {words:<16} {result['images']:>6} {result['temperature']:>6.2f}  "
                f"{result['ece_before']:>10.3f} {result['ece']:>10.3f}  {nll_before:>10.3f} {nll_after:>10.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
