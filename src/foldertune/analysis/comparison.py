"""Compare runs side by side: a table of their best metrics and training time, and whether they really differ.

    out, runs = compare(["runs/resnet18-linear", "runs/resnet18-finetune", "runs/resnet18-scratch"])
    # ./compare/compare.csv and pairs.csv; both are printed as well. `compare(glob("runs/*"))` skips non-runs

Each run's best validation accuracy comes with its 95% Wilson interval. Two runs whose best.pt was evaluated on the
same validation images (eval/val/predictions.csv) are compared image by image with McNemar's exact test; runs
validated on different images can only be compared by their intervals (overlapping or not). Up to MAX_ALL_PAIRS runs
every pair is tested, beyond that each run against the most accurate one.

Typical use: the three transfer modes, or several backbones, on one dataset. The overlaid validation curves
(compare.png) are drawn by reporting/plots/curves.py; `foldertune compare` and `ft.compare` do both.
"""

from __future__ import annotations

import os
from pathlib import Path

from foldertune.analysis.intervals import accuracy_interval, mcnemar
from foldertune.errors import UserError
from foldertune.runs.atomic import check_output
from foldertune.runs.folder import RunFolder
from foldertune.runs.tables import read_table, write_table

COLUMNS = ["run", "backbone", "mode", "epochs", "best_epoch", "best_val_acc", "val_acc_low", "val_acc_high",
           "best_val_f1", "last_val_acc", "train_seconds", "images_per_s"]  # fmt: skip
PAIR_COLUMNS = ["run_a", "run_b", "test", "images", "a_only", "b_only", "p_value", "verdict"]
MAX_ALL_PAIRS = 6


def compare(
    runs: list[str | os.PathLike], *, out: str | os.PathLike | None = None, force: bool = False, log=print
) -> tuple[Path, list[Path]]:
    """Write compare.csv into `out` (default: ./compare, outside any list of runs) and print it; returns `out` and
    the run folders compared. Folders among `runs` that are not runs are left out with a note; a path that does not
    exist is an error. An `out` that holds files is refused unless `force`."""
    for run in runs:
        if not Path(run).exists():
            raise UserError(f"run folder '{run}' does not exist; pass run folders, as in foldertune compare runs/*.")
    seen: dict[Path, str | os.PathLike] = {}
    for run in runs:
        if Path(run).resolve() in seen:
            raise UserError(f"'{run}' is given twice (also as '{seen[Path(run).resolve()]}'); pass each run once.")
        seen[Path(run).resolve()] = run
    folders = []
    for run in runs:
        if RunFolder(run).has_training_logs():
            folders.append(RunFolder(run))
        else:
            log(f"note: left out '{run}': not a foldertune run folder with training logs (no epochs.csv)")
    if len(folders) < 2:
        raise UserError(f"compare needs at least two run folders with training logs; got {len(folders)}.")
    out = check_output(out or "compare", "--out", force=force, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    rows = [summarize(folder) for folder in folders]
    write_table(out / "compare.csv", COLUMNS, rows)
    log(format_table(rows))
    pairs = compare_pairs(folders, rows)
    write_table(out / "pairs.csv", PAIR_COLUMNS, pairs)
    for pair in pairs:
        log(pair["verdict"])
    log(f"comparison: {out}")
    return out, [folder.path for folder in folders]


def summarize(run: RunFolder) -> dict[str, object]:
    """One row of the comparison: what the run is, its best epoch (by the run's --best-metric) and what it cost."""
    epochs = run.epochs()
    if not epochs:
        raise UserError(f"run '{run.path}' has no finished epoch to compare yet.")
    settings = run.config()["settings"]
    metric = {"accuracy": "val_acc", "f1": "val_f1", "balanced_accuracy": "val_recall"}[
        settings["train"]["best_metric"]
    ]
    best = max(epochs, key=lambda row: float(row[metric]))  # the first of equals, as best.pt keeps it
    low, high = _interval(run, best)
    seconds = sum(float(row["seconds"]) for row in epochs)
    images = sum(float(row["images_per_s"]) * float(row["seconds"]) for row in epochs)
    return {
        "run": run.name,
        "backbone": settings["model"]["backbone"],
        "mode": settings["train"]["mode"],
        "epochs": len(epochs),
        "best_epoch": int(best["epoch"]),
        "best_val_acc": round(float(best["val_acc"]), 4),
        "val_acc_low": round(low, 4),
        "val_acc_high": round(high, 4),
        "best_val_f1": round(float(best["val_f1"]), 4),
        "last_val_acc": round(float(epochs[-1]["val_acc"]), 4),
        "train_seconds": round(seconds, 1),
        "images_per_s": round(images / seconds, 1) if seconds else 0.0,
    }


def _interval(run: RunFolder, best: dict[str, str]) -> tuple[float, float]:
    """The 95% interval of the best epoch's validation accuracy: from epochs.csv, or (a run logged before intervals)
    from the number of validation images."""
    if best.get("val_acc_low"):
        return float(best["val_acc_low"]), float(best["val_acc_high"])
    images = sum(row["split"] == "val" for row in run.split_rows())
    return accuracy_interval(float(best["val_acc"]), images)


def compare_pairs(folders: list[RunFolder], rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Rows of pairs.csv: for each pair of runs, McNemar's exact test on their shared validation images, or the
    overlap of their intervals; `verdict` says it in a sentence."""
    correct = [_val_correct(folder) for folder in folders]
    indices = range(len(folders))
    if len(folders) <= MAX_ALL_PAIRS:
        pairs = [(a, b) for a in indices for b in indices if a < b]
    else:
        best = max(indices, key=lambda i: float(rows[i]["best_val_acc"]))
        pairs = [(best, other) for other in indices if other != best]
    classes = [folder.classes() if folder.classes_file.is_file() else None for folder in folders]
    return [
        _pair(rows[a], rows[b], correct[a], correct[b]) if classes[a] == classes[b] else _apart(rows[a], rows[b])
        for a, b in pairs
    ]


def _apart(a: dict, b: dict) -> dict[str, object]:
    """A pair of runs that learned different classes: their accuracies measure different tasks."""
    verdict = (f"{a['run']} vs {b['run']}: trained on different classes, so their accuracies measure different "
               "tasks: not compared")  # fmt: skip
    return {"run_a": a["run"], "run_b": b["run"], "test": "none", "images": "", "a_only": "", "b_only": "",
            "p_value": "", "verdict": verdict}  # fmt: skip


def _val_correct(run: RunFolder) -> dict[str, bool] | None:
    """Path -> whether best.pt got it right, from the run's evaluation of its validation split; None without one."""
    file = run.evaluation("val").predictions_file
    if not file.is_file():
        return None
    return {row["path"]: row["correct"] == "1" for row in read_table(file) if row.get("predicted")}


def _pair(a: dict, b: dict, correct_a: dict | None, correct_b: dict | None) -> dict[str, object]:
    names = f"{a['run']} vs {b['run']}"
    if correct_a and correct_b and correct_a.keys() == correct_b.keys():
        paths = sorted(correct_a)
        test = mcnemar([correct_a[p] for p in paths], [correct_b[p] for p in paths])
        if test["differ"]:
            better = a["run"] if test["a_only"] > test["b_only"] else b["run"]
            finding = f"they differ beyond chance (p = {test['p_value']:.3f}): {better} is better"
        else:
            finding = f"no difference beyond chance (p = {test['p_value']:.2f})"
        verdict = (f"{names}: on the same {len(paths)} validation images, {test['a_only']} right only by "
                   f"{a['run']}, {test['b_only']} only by {b['run']} (McNemar's exact test): {finding}")  # fmt: skip
        return {"run_a": a["run"], "run_b": b["run"], "test": "mcnemar", "images": len(paths),
                "a_only": test["a_only"], "b_only": test["b_only"], "p_value": round(test["p_value"], 4),
                "verdict": verdict}  # fmt: skip
    overlap = a["val_acc_low"] <= b["val_acc_high"] and b["val_acc_low"] <= a["val_acc_high"]
    why = "validated on different images" if correct_a and correct_b else "no eval/val of best.pt to pair them on"
    finding = ("the 95% intervals overlap: no clear difference" if overlap else
               "the 95% intervals do not overlap: " + (a["run"] if a["best_val_acc"] > b["best_val_acc"] else b["run"])
               + " is better")  # fmt: skip
    verdict = (f"{names}: {why}; {a['val_acc_low']:.2f}-{a['val_acc_high']:.2f} against "
               f"{b['val_acc_low']:.2f}-{b['val_acc_high']:.2f}: {finding}")  # fmt: skip
    return {"run_a": a["run"], "run_b": b["run"], "test": "intervals", "images": "", "a_only": "", "b_only": "",
            "p_value": "", "verdict": verdict}  # fmt: skip


def format_table(rows: list[dict[str, object]]) -> str:
    widths = {column: max(len(column), *(len(str(row[column])) for row in rows)) for column in COLUMNS}
    lines = ["  ".join(column.ljust(widths[column]) for column in COLUMNS)]
    lines += ["  ".join(str(row[column]).ljust(widths[column]) for column in COLUMNS) for row in rows]
    return "\n".join(lines)
