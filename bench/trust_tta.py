"""What test-time augmentation (`--tta`: the image and its mirror image) buys, and what it costs.

    python bench/trust_tta.py                  # the sample (finetune and linear) and Fashion-MNIST (linear)
    python bench/trust_tta.py --no-fashion
    python bench/trust_tta.py --seeds 3        # each run with seeds 0, 1, 2 (split and training), then the means
    python bench/trust_tta.py --seeds 3 --no-finetune   # the linear runs only (a finetune takes minutes on a CPU)

Each run is evaluated on its validation split twice, `foldertune evaluate --no-figures` without and with `--tta`;
printed: accuracy, balanced accuracy and log loss of both, the images that changed from wrong to right and back,
and the seconds each evaluation took (the network runs twice per image with --tta). Runs: the sample in linear
mode (20 epochs) and in finetune mode (3 epochs), Fashion-MNIST (--fashion-per-class per class, linear); with
--seeds N each of them N times (the seed draws the split and the training), and a last table of the means over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_check import fashion_folder

from foldertune.data import sample_data_path
from foldertune.runs.tables import read_table


def compare(name: str, run: Path, work: Path) -> dict:
    import foldertune as ft

    result = {"data": name}
    correct = {}
    for tta in (False, True):
        started = time.perf_counter()
        out = ft.evaluate(run, out=work / f"{name}-{tta}", tta=tta, no_figures=True, quiet=True, device="cpu",
                          log=lambda *_: None)  # fmt: skip
        seconds = time.perf_counter() - started
        overall = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["overall"]
        rows = read_table(out / "predictions.csv")
        correct[tta] = np.array([row["correct"] == "1" for row in rows])
        tag = "tta" if tta else "plain"
        result.update({f"{tag}_accuracy": overall["accuracy"], f"{tag}_balanced": overall["balanced_accuracy"],
                       f"{tag}_loss": overall["loss"], f"{tag}_seconds": seconds})  # fmt: skip
    result["fixed"] = int((~correct[False] & correct[True]).sum())
    result["broken"] = int((correct[False] & ~correct[True]).sum())
    result["images"] = len(correct[False])
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, flush=True)
    return result


def line(name: str, r: dict) -> str:
    return (f"{name:19s} {r['images']:6.0f}  {r['plain_accuracy']:.3f} -> {r['tta_accuracy']:.3f}         "
            f"{r['plain_loss']:.3f} -> {r['tta_loss']:.3f}       {r['fixed']:5.1f} {r['broken']:6.1f}   "
            f"{r['plain_seconds']:.1f} -> {r['tta_seconds']:.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    import foldertune as ft

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-fashion", action="store_true", help="the sample only")
    parser.add_argument("--fashion-per-class", type=int, default=100, metavar="N")
    parser.add_argument("--no-finetune", action="store_true", help="the linear runs only")
    parser.add_argument("--seeds", type=int, default=1, metavar="N", help="train each run with seeds 0 .. N-1")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="trust-tta-") as scratch:
        work = Path(scratch)
        fashion = None if args.no_fashion else fashion_folder(work / "fashion", args.fashion_per_class)
        for seed in range(args.seeds):
            common = {"report": False, "quiet": True, "workers": 0, "project": str(work / "runs"), "seed": seed}
            sample = sample_data_path()
            runs = [("sample-linear", ft.train(sample, mode="linear", epochs=20, name=f"s-lin-{seed}", **common))]
            if not args.no_finetune:
                runs.append(("sample-finetune", ft.train(sample, epochs=3, name=f"s-ft-{seed}", **common)))
            if fashion is not None:
                runs.append(("fashion-linear", ft.train(fashion, mode="linear", epochs=20, name=f"f-lin-{seed}",
                                                        **common)))  # fmt: skip
            for name, run in runs:
                results.append({"seed": seed, **compare(f"{name}-{seed}", run, work / f"seed-{seed}")})
    print(f"\n{'data':19s} images  accuracy plain -> tta   loss plain -> tta   fixed broken   seconds plain -> tta")
    for r in results:
        print(line(r["data"], r))
    if args.seeds > 1:
        print(f"\nmean over {args.seeds} seeds")
        for name in dict.fromkeys(r["data"].rsplit("-", 1)[0] for r in results):
            mine = [r for r in results if r["data"].rsplit("-", 1)[0] == name]
            print(line(name, {key: np.mean([r[key] for r in mine]) for key in mine[0] if key not in ("data", "seed")}))
    return results


if __name__ == "__main__":
    main()
