"""Which training recipe to default to: the current default against each recipe flag, fine-tuning mobilenet_v2.

    python bench/recipe.py                                   # both sets, 3 seeds, every recipe; resumable
    python bench/recipe.py --results /tmp/recipe.jsonl --sets sample --seeds 0 1 2 3 4
    python bench/recipe.py --table-only                      # print the table of the runs done so far

Sets (each seed draws its own stratified 80/20 split; within a seed every recipe trains and validates on the same
one):
- sample: the bundled sample (138 photos, 5 classes), --sample-epochs epochs at --sample-size pixels.
- fashion: Fashion-MNIST (Debian's `dataset-fashion-mnist`), --fashion-per-class training images of each of its
  10 classes written as PNG, --fashion-epochs epochs at --fashion-size pixels.
Recipes, each `foldertune train --mode finetune` (--mode linear: default and smoothing only) from torchvision's
ImageNet weights with one change: default;
--label-smoothing 0.1; --ema; --head-warmup 1; --augment trivialwide; --augment randaugment; --layer-decay 0.8.
Then (--lr-find) the learning-rate range test in fine-tune mode on the sample, per seed, and a run at its
suggestion (`--lr auto`) against the default recipe's run at the default rate.

Every run's numbers are appended to --results as one JSON line as soon as it ends, and runs already there are not
trained again: an interrupted bench continues where it stopped. Printed per set and recipe: the mean and spread
(standard deviation over seeds) of the validation accuracy and macro F1 of best.pt, the Wilson 95% interval of the
accuracy pooled over the seeds' validation images, and the mean training seconds. A recipe "wins" on a set when
its mean accuracy exceeds the default's by more than the larger of the two spreads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_check import fashion_folder

import foldertune as ft
from foldertune.analysis.intervals import wilson_interval
from foldertune.config import DEFAULT_LR
from foldertune.data import sample_data_path

RECIPES = {
    "default": {},
    "smoothing 0.1": {"label_smoothing": 0.1},
    "ema": {"ema": 0.999},
    "head warm-up 1": {"head_warmup": 1},
    "trivialwide": {"augment": "trivialwide"},
    "randaugment": {"augment": "randaugment"},
    "layer decay 0.8": {"layer_decay": 0.8},
}
LR_AUTO = "lr auto"  # the default recipe at the range test's suggestion


def train_one(data: Path, name: str, settings: dict, seed: int, size: int, epochs: int, args, project: Path) -> dict:
    """One run of the recipe `settings`; its best.pt's validation numbers and the training seconds."""
    started = time.perf_counter()
    run = ft.train(data=str(data), model="mobilenet_v2", mode=args.mode, epochs=epochs, img_size=size, seed=seed,
                   workers=args.workers, cache="ram", report=False, quiet=True, project=str(project),
                   name=f"{name.replace(' ', '-')}-{seed}", **settings)  # fmt: skip
    seconds = time.perf_counter() - started
    val = json.loads((run / "metrics.json").read_text())["val"]
    return {"accuracy": val["accuracy"], "f1": val["f1"], "images": val["images"], "seconds": seconds}


def measure(args, results: Path) -> None:
    done = {(row["set"], row["recipe"], row["seed"]) for row in read_rows(results)}
    with tempfile.TemporaryDirectory(prefix="recipe-bench-") as folder:
        work = Path(folder)
        sets = {}
        if "sample" in args.sets:
            sets["sample"] = (sample_data_path(), args.sample_size, args.sample_epochs)
        if "fashion" in args.sets:
            sets["fashion"] = (fashion_folder(work / "data" / "fashion", args.fashion_per_class), args.fashion_size,
                               args.fashion_epochs)  # fmt: skip
        for seed in args.seeds:  # seeds outermost: a bench cut short still compares every recipe on the first seeds
            for set_name, (data, size, epochs) in sets.items():
                for recipe in args.recipes:
                    if (set_name, recipe, seed) in done:
                        continue
                    row = train_one(data, recipe, RECIPES[recipe], seed, size, epochs, args, work / "runs" / set_name)
                    append(results, {"set": set_name, "recipe": recipe, "seed": seed, **row})
        for seed in args.seeds if args.lr_find else []:  # after the recipes, which the table needs most
            if ("sample", LR_AUTO, seed) not in done:
                data, size, epochs = sample_data_path(), args.sample_size, args.sample_epochs
                started = time.perf_counter()
                found = ft.lr_find(data=str(data), model="mobilenet_v2", mode="finetune", img_size=size, seed=seed,
                                   workers=args.workers, steps=args.lr_find_steps, quiet=True)  # fmt: skip
                find_seconds = time.perf_counter() - started
                row = train_one(data, LR_AUTO, {"lr": found.suggestion}, seed, size, epochs, args, work / "runs" / "lr")
                append(results, {"set": "sample", "recipe": LR_AUTO, "seed": seed, "lr": found.suggestion,
                                 "find_seconds": find_seconds, **row})  # fmt: skip


def append(results: Path, row: dict) -> None:
    with open(results, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    extra = f"  lr {row['lr']:.2e}" if "lr" in row else ""
    print(f"{row['set']:<8}{row['recipe']:<17}seed {row['seed']}: accuracy {row['accuracy']:.3f}  macro F1 "
          f"{row['f1']:.3f}  ({row['seconds']:.0f} s){extra}", flush=True)  # fmt: skip


def read_rows(results: Path) -> list[dict]:
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def print_table(rows: list[dict]) -> None:
    print(f"\n{'set':<8}{'recipe':<17}{'seeds':>5}{'accuracy':>16}{'macro F1':>16}{'pooled 95% interval':>22}"
          f"{'seconds':>9}  vs default")  # fmt: skip
    for set_name in dict.fromkeys(row["set"] for row in rows):
        chosen = {recipe: [row for row in rows if row["set"] == set_name and row["recipe"] == recipe]
                  for recipe in [*RECIPES, LR_AUTO]}  # fmt: skip
        base = [row["accuracy"] for row in chosen["default"]]
        for recipe, runs in chosen.items():
            if not runs:
                continue
            accuracy, f1 = [row["accuracy"] for row in runs], [row["f1"] for row in runs]
            correct = sum(round(row["accuracy"] * row["images"]) for row in runs)
            images = sum(row["images"] for row in runs)
            low, high = wilson_interval(correct, images)
            verdict = ""
            if recipe != "default" and base:
                gap = statistics.mean(accuracy) - statistics.mean(base)
                beyond = abs(gap) > max(spread(accuracy), spread(base))
                verdict = f"{gap:+.3f}" + (" beyond the spread" if beyond else " within the spread")
            seconds = statistics.mean(row["seconds"] for row in runs)
            mean_accuracy, mean_f1 = statistics.mean(accuracy), statistics.mean(f1)
            print(f"{set_name:<8}{recipe:<17}{len(runs):>5}{mean_accuracy:>9.3f} ±{spread(accuracy):.3f}"
                  f"{mean_f1:>9.3f} ±{spread(f1):.3f}{f'{correct}/{images} {low:.3f}-{high:.3f}':>22}{seconds:>9.0f}"
                  f"  {verdict}")  # fmt: skip
    found = [row for row in rows if row["recipe"] == LR_AUTO]
    if found:
        rates = ", ".join(f"{row['lr']:.1e}" for row in found)
        print(f"\nlr-find (fine-tune, sample): suggestions {rates} against the default {DEFAULT_LR['finetune']:.0e}; "
              f"range test {statistics.mean(row['find_seconds'] for row in found):.0f} s on average")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["sample", "fashion"], choices=["sample", "fashion"])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sample-size", type=int, default=112, help="pixels; small to keep 2 CPU cores' time down")
    parser.add_argument("--sample-epochs", type=int, default=6)
    parser.add_argument("--fashion-per-class", type=int, default=40)
    parser.add_argument("--fashion-size", type=int, default=64)
    parser.add_argument("--fashion-epochs", type=int, default=6)
    parser.add_argument(
        "--mode",
        default="finetune",
        choices=["finetune", "linear"],
        help="transfer mode of every recipe run (the lr-find part is fine-tune mode)",
    )
    parser.add_argument("--lr-find", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--lr-find-steps", type=int, default=24)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--results", type=Path, default=Path("recipe-results.jsonl"), help="one JSON line per run")
    parser.add_argument("--table-only", action="store_true", help="print the table of --results and stop")
    args = parser.parse_args(argv)
    if not args.table_only:
        measure(args, args.results)
    print_table(read_rows(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
