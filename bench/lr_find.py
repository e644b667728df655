"""lr-find's suggestion against the per-mode default learning rates, on the bundled sample.

    python bench/lr_find.py                              # linear and finetune, mobilenet_v2, seed 0, 160 px
    python bench/lr_find.py --modes finetune --img-size 96 --workers 0
    python bench/lr_find.py --modes linear --seeds 0 1 2 --img-size 224

Linear mode takes a few minutes on 2 CPU cores (the range test and the trainings run on cached features);
finetune mode's range test alone is 100 training steps of 32 images through the whole network.

For each mode: the range test (foldertune's, 100 steps from 1e-7 to 10) prints its three suggestions (valley, the
one `--lr auto` uses; steepest descent; minimum / 10); then the same short training runs with the mode's default
learning rate and with each suggestion that differs from it, and the best epoch's validation accuracy and macro F1
are printed side by side. One run per seed and rate; the sample's validation split has 28 photos, so one photo is
3.6 points of accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import foldertune as ft
from foldertune.config import DEFAULT_LR

EPOCHS = {"linear": 10, "finetune": 4, "scratch": 4}


def measure(mode: str, seed: int, args, project: Path) -> list[dict]:
    common = {"model": args.model, "mode": mode, "img_size": args.img_size, "seed": seed, "workers": args.workers,
              "quiet": True, "project": str(project)}  # fmt: skip
    started = time.perf_counter()
    found = ft.lr_find(out=str(project / f"lr-find-{mode}-{seed}.png"), **common)
    find_seconds = time.perf_counter() - started
    print(f"{mode} seed {seed}: {found.describe()} ({find_seconds:.0f} s)", flush=True)
    rates = {"default": DEFAULT_LR[mode], "valley": found.suggestion, "steep": found.steep, "minimum/10": found.minimum}
    rows = []
    for rule, lr in rates.items():
        started = time.perf_counter()
        run = ft.train(lr=lr, epochs=EPOCHS[mode], report=False, **common)
        metrics = json.loads((run / "metrics.json").read_text())["val"]
        rows.append({"mode": mode, "seed": seed, "rule": rule, "lr": lr, "accuracy": metrics["accuracy"],
                     "f1": metrics["f1"], "seconds": time.perf_counter() - started})  # fmt: skip
        print(f"  {rule:<11} lr {lr:.2e}: val accuracy {metrics['accuracy']:.3f}  macro F1 {metrics['f1']:.3f}  "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--modes", nargs="+", default=["linear", "finetune"], choices=list(EPOCHS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--img-size", type=int, default=160, help="smaller than 224 to keep the CPU time down")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lr-find-bench-") as folder:
        for mode in args.modes:
            for seed in args.seeds:
                rows += measure(mode, seed, args, Path(folder) / f"{mode}-{seed}")
    print(
        f"\n{'mode':<9}{'rule':<12}{'lr':>10}{'accuracy':>10}{'macro F1':>10}   (mean over {len(args.seeds)} seed(s))"
    )
    for mode in args.modes:
        for rule in ("default", "valley", "steep", "minimum/10"):
            chosen = [row for row in rows if row["mode"] == mode and row["rule"] == rule]
            mean = {key: sum(row[key] for row in chosen) / len(chosen) for key in ("lr", "accuracy", "f1")}
            print(f"{mode:<9}{rule:<12}{mean['lr']:>10.2e}{mean['accuracy']:>10.3f}{mean['f1']:>10.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
