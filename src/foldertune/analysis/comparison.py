"""Compare runs side by side: a table of their best metrics and training time.

    out, runs = compare(["runs/resnet18-linear", "runs/resnet18-finetune", "runs/resnet18-scratch"])
    # ./compare/compare.csv; the table is printed as well. `compare(glob("runs/*"))` skips folders that are not runs

Typical use: the three transfer modes, or several backbones, on one dataset. The overlaid validation curves
(compare.png) are drawn by reporting/plots/curves.py; `foldertune compare` and `ft.compare` do both.
"""

from __future__ import annotations

import os
from pathlib import Path

from foldertune.errors import UserError
from foldertune.runs.atomic import check_output
from foldertune.runs.folder import RunFolder
from foldertune.runs.tables import write_table

COLUMNS = ["run", "backbone", "mode", "epochs", "best_epoch", "best_val_acc", "best_val_f1", "last_val_acc",
           "train_seconds", "images_per_s"]  # fmt: skip


def compare(
    runs: list[str | os.PathLike], *, out: str | os.PathLike | None = None, force: bool = False, log=print
) -> tuple[Path, list[Path]]:
    """Write compare.csv into `out` (default: ./compare, outside any list of runs) and print it; returns `out` and
    the run folders compared. Folders among `runs` that are not runs are left out with a note; a path that does not
    exist is an error. An `out` that holds files is refused unless `force`."""
    for run in runs:
        if not Path(run).exists():
            raise UserError(f"run folder '{run}' does not exist; pass run folders, as in foldertune compare runs/*.")
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
    seconds = sum(float(row["seconds"]) for row in epochs)
    images = sum(float(row["images_per_s"]) * float(row["seconds"]) for row in epochs)
    return {
        "run": run.name,
        "backbone": settings["model"]["backbone"],
        "mode": settings["train"]["mode"],
        "epochs": len(epochs),
        "best_epoch": int(best["epoch"]),
        "best_val_acc": round(float(best["val_acc"]), 4),
        "best_val_f1": round(float(best["val_f1"]), 4),
        "last_val_acc": round(float(epochs[-1]["val_acc"]), 4),
        "train_seconds": round(seconds, 1),
        "images_per_s": round(images / seconds, 1) if seconds else 0.0,
    }


def format_table(rows: list[dict[str, object]]) -> str:
    widths = {column: max(len(column), *(len(str(row[column])) for row in rows)) for column in COLUMNS}
    lines = ["  ".join(column.ljust(widths[column]) for column in COLUMNS)]
    lines += ["  ".join(str(row[column]).ljust(widths[column]) for column in COLUMNS) for row in rows]
    return "\n".join(lines)
