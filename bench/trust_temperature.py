"""How well a temperature fitted on a small validation split calibrates images it has not seen, by fitting rule.

    python bench/trust.py --parts temperature                      # through the bench's runner
    python bench/trust_temperature.py                              # alone: the sample and Fashion-MNIST, both modes
    python bench/trust_temperature.py --fashion-per-class 200 --draws 500 --modes linear

For each data set (the bundled sample; Fashion-MNIST, --fashion-per-class images of each class) and each --modes, one
run of `foldertune train` learns from half of the images (mobilenet_v2, pretrained; linear: 20 epochs on the feature
cache; finetune: 3 epochs; finetune-long: 10 epochs without label smoothing, an over-confident network); the other
half is a pool of held-out images whose logits are computed once. Then, for each validation size n, --draws times:
n images of the pool play the validation split, a temperature is fitted on them by each rule, and the log loss and
the expected calibration error (15 bins) are measured on the rest of the pool. Printed per size and rule: the mean
over draws of the log loss and the ECE, the share of draws where the rule did worse than no temperature at all
(T = 1) in log loss, and the median T. "best" is the plain minimum on the whole pool, measured on it: the floor.

Rules: "none" (T = 1); "plain" (the log-loss minimum within [0.1, 10], T = 1 when the n images hold no mistake:
foldertune's rule before the prior); "shipped" (`fit_temperature`: the minimum of n * log loss + (log T)^2 / (2 s^2),
a normal prior on log T around 0 with s = PRIOR_SCALE, which matters on a few images and fades on many); "prior s":
the same with another spread s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

SIZES = (5, 10, 20, 40, 80, 160)
PRIORS = (0.15, 0.5)  # spreads of the prior on log T to compare with the shipped one
MODES = {  # settings of `foldertune train` per --modes
    "linear": {"mode": "linear", "epochs": 20},
    "finetune": {"mode": "finetune", "epochs": 3},
    "finetune-long": {"mode": "finetune", "epochs": 10, "label_smoothing": 0.0},  # over-confident: T above 1
}


def held_out_logits(data: Path, work: Path, name: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Train on half of `data` (the other half as its validation split); the logits and targets of that half."""
    import foldertune as ft
    from foldertune.data.scan import scan_folder
    from foldertune.data.split import assign_splits, write_manifest

    scan = scan_folder(data, progress=False)
    split, _ = assign_splits(scan.images, val_fraction=0.5, test_fraction=0.0, seed=0)
    manifest = work / f"{name}-{mode}.csv"
    write_manifest(manifest, split)
    run = ft.train(manifest=str(manifest), report=False, quiet=True, project=str(work / "runs"), name=f"{name}-{mode}",
                   **MODES[mode])  # fmt: skip
    classifier = ft.load(run, device="cpu")
    pool = [record for record in split if record.split == "val"]
    index = {label: i for i, label in enumerate(classifier.classes)}
    logits, targets = [], []
    for chunk, errors, images in classifier.load_batches([Path(r.path) for r in pool], progress=False):
        label_of = {Path(r.path): r.label for r in pool}
        logits.append(classifier.outputs(images)[1])
        targets += [index[label_of[path]] for path, error in zip(chunk, errors, strict=True) if error is None]
    return np.concatenate(logits), np.array(targets)


def plain_fit(logits: np.ndarray, targets: np.ndarray) -> float:
    """foldertune's rule before the prior: the log loss's minimum within [0.1, 10], T = 1 without a mistake."""
    from scipy.optimize import minimize_scalar

    from foldertune.analysis.calibration import nll

    if (logits.argmax(axis=1) == targets).all():
        return 1.0
    bound = np.log(10.0)
    found = minimize_scalar(lambda log_t: nll(logits, targets, np.exp(log_t)), bounds=(-bound, bound),
                            method="bounded", options={"xatol": 1e-4})  # fmt: skip
    return float(np.exp(found.x)) if nll(logits, targets, np.exp(found.x)) <= nll(logits, targets) else 1.0


def rules() -> dict:
    """name -> fit(logits, targets) -> T: no temperature, the plain minimum, the shipped prior, and other spreads."""
    from foldertune.analysis import calibration

    def prior(scale: float):
        def fit(logits, targets):
            shipped = calibration.PRIOR_SCALE
            calibration.PRIOR_SCALE = scale
            try:
                return calibration.fit_temperature(logits, targets)
            finally:
                calibration.PRIOR_SCALE = shipped

        return fit

    return {"none": lambda logits, targets: 1.0, "plain": plain_fit,
            f"shipped ({calibration.PRIOR_SCALE:g})": calibration.fit_temperature,
            **{f"prior {scale:g}": prior(scale) for scale in PRIORS}}  # fmt: skip


def simulate(logits: np.ndarray, targets: np.ndarray, label: str, draws: int, seed: int = 0) -> None:
    from foldertune.analysis.calibration import expected_calibration_error, nll, softmax

    best = plain_fit(logits, targets)
    print(f"\n{label}: pool of {len(targets)} held-out images, accuracy {np.mean(logits.argmax(1) == targets):.3f}, "
          f"best T {best:.2f} (log loss {nll(logits, targets, best):.3f}, "
          f"ECE {expected_calibration_error(softmax(logits, best), targets):.3f}; "
          f"T = 1: {nll(logits, targets):.3f}, "
          f"{expected_calibration_error(softmax(logits), targets):.3f})")  # fmt: skip
    fitters = rules()
    print(f"{'n':>4}  " + "  ".join(f"{name:>22}" for name in fitters))
    print(f"{'':>4}  " + "  ".join(f"{'loss   ECE  worse  T':>22}" for _ in fitters))
    generator = np.random.default_rng(seed)
    for size in [size for size in SIZES if size <= len(targets) // 2]:
        results = {name: [] for name in fitters}
        for _ in range(draws):
            chosen = np.zeros(len(targets), dtype=bool)
            chosen[generator.choice(len(targets), size, replace=False)] = True
            base = nll(logits[~chosen], targets[~chosen])
            for name, fit in fitters.items():
                t = fit(logits[chosen], targets[chosen])
                loss = nll(logits[~chosen], targets[~chosen], t)
                ece = expected_calibration_error(softmax(logits[~chosen], t), targets[~chosen])
                results[name].append((loss, ece, loss > base + 1e-9, t))
        cells = []
        for rows in results.values():
            loss, ece, worse, t = np.array(rows).T
            cells.append(f"{loss.mean():.3f} {ece.mean():.3f} {worse.mean():4.0%} {np.median(t):4.2f}")
        print(f"{size:>4}  " + "  ".join(f"{cell:>22}" for cell in cells), flush=True)


def main(argv: list[str] | None = None) -> int:
    """The log loss and ECE on unseen images of a temperature fitted on n validation images, by fitting rule."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="the sample in linear mode, 50 draws")
    parser.add_argument("--modes", nargs="+", default=["linear", "finetune"], choices=list(MODES))
    parser.add_argument("--fashion-per-class", type=int, default=100, metavar="N")
    parser.add_argument("--draws", type=int, default=300)
    args, _ = parser.parse_known_args(argv)
    from label_check import fashion_folder

    from foldertune.data import sample_data_path

    with tempfile.TemporaryDirectory(prefix="trust-temperature-") as scratch:
        work = args.workdir or Path(scratch)
        sets = {"sample": sample_data_path()}
        if not args.quick:
            sets["fashion"] = fashion_folder(work / "fashion", args.fashion_per_class)
        for name, data in sets.items():
            for mode in ["linear"] if args.quick else args.modes:
                logits, targets = held_out_logits(data, work, name, mode)
                simulate(logits, targets, f"{name} {mode}", 50 if args.quick else args.draws)
    return 0


if __name__ == "__main__":
    sys.exit(main())
