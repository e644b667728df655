"""Compare runs side by side: a table of their best metrics and training time.

    out = compare(["runs/resnet18-linear", "runs/resnet18-finetune", "runs/resnet18-scratch"])
    # out/compare.csv; the table is printed as well

Typical use: the three transfer modes, or several backbones, on one dataset. The overlaid validation curves
(compare.png) are drawn by reporting/plots/curves.py; `foldertune compare` and `ft.compare` do both.
"""

from __future__ import annotations

import os
from pathlib import Path

from foldertune.errors import UserError
from foldertune.runs.folder import RunFolder
from foldertune.runs.tables import write_table

COLUMNS = ["run", "backbone", "mode", "epochs", "best_epoch", "best_val_acc", "best_val_f1", "last_val_acc",
           "train_seconds", "images_per_s"]  # fmt: skip


def compare(runs: list[str | os.PathLike], *, out: str | os.PathLike | None = None, log=print) -> Path:
    """Write compare.csv into `out` (default: compare/ beside the first run) and print it; returns `out`."""
    folders = [RunFolder(run) for run in runs]
    if len(folders) < 2:
        raise UserError("compare needs at least two run folders.")
    for folder in folders:
        if not folder.has_training_logs():
            raise UserError(f"'{folder.path}' is not a foldertune run folder with training logs (no epochs.csv).")
    out = Path(out) if out else folders[0].path.parent / "compare"
    out.mkdir(parents=True, exist_ok=True)
    rows = [summarize(folder) for folder in folders]
    write_table(out / "compare.csv", COLUMNS, rows)
    log(format_table(rows))
    log(f"comparison: {out}")
    return out


def summarize(run: RunFolder) -> dict[str, object]:
    """One row of the comparison: what the run is, its best epoch (by the run's --best-metric) and what it cost."""
    epochs = run.epochs()
    if not epochs:
        raise UserError(f"run '{run.path}' has no finished epoch to compare yet.")
    settings = run.config()["settings"]
    metric = "val_acc" if settings["train"]["best_metric"] == "accuracy" else "val_f1"
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
