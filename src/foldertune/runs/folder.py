"""The run folder: the contract between commands (see docs/design.md for every file it holds).

run = RunFolder.create("runs", None, default_name="mobilenet_v2-finetune")   # runs/mobilenet_v2-finetune[-2...]
run.write_json("classes.json", {"0": "cat"})
log = run.csv_log("epochs.csv", EPOCH_COLUMNS)
log.append({"epoch": 1, ...})      # flushed at once: a crash keeps what was logged
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foldertune.errors import UserError
from foldertune.runs.atomic import FULL, atomic_open, disk_full
from foldertune.runs.tables import read_table

BATCH_COLUMNS = ["epoch", "step", "loss", "accuracy", "lr"]
EPOCH_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_precision",
    "val_recall",
    "val_f1",
    "lr",
    "seconds",
    "images_per_s",
]
REPORT_COLUMNS = ["path", "class", "split", "problem", "reason"]


def check_new_run(cfg) -> None:
    """Mistakes about paths that can be reported before a single image is read (a RunConfig in, nothing out)."""
    from foldertune.data.scan import is_inside

    project = Path(cfg.project).expanduser()
    if cfg.run_name is not None and (project / cfg.run_name).exists():
        raise UserError(
            f"run folder '{project / cfg.run_name}' already exists; pick another --name, or continue it with "
            f"--resume {project / cfg.run_name}."
        )
    if cfg.data.root and Path(cfg.data.root).is_dir() and is_inside(project, cfg.data.root):
        raise UserError(
            f"run folders would go into the data folder ('{project.absolute()}' is inside '{cfg.data.root}'); run "
            "foldertune from another folder or pass --project DIR outside the data."
        )
    if cfg.model.weights and not Path(cfg.model.weights).expanduser().is_file():
        raise UserError(f"--weights file '{cfg.model.weights}' does not exist.")


class RunFolder:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, project: str | os.PathLike, name: str | None, *, default_name: str) -> RunFolder:
        """A new, empty run folder; with no name, the first free of default_name, default_name-2, ..."""
        project = Path(project).expanduser()
        project.mkdir(parents=True, exist_ok=True)
        if name is not None:
            if "/" in name or "\\" in name or name in ("", ".", ".."):
                raise UserError(f"--name {name!r} must be a plain folder name, without slashes.")
            path = project / name
            try:
                path.mkdir()
            except FileExistsError:
                raise UserError(
                    f"run folder '{path}' already exists; pick another --name, or continue it with --resume {path}."
                ) from None
            return cls(path)
        for number in range(1, 10_000):
            path = project / (default_name if number == 1 else f"{default_name}-{number}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise UserError(f"'{project}' holds too many runs named {default_name}; pass --name.")

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        """UTF-8 JSON (Chinese stays readable), written to a temporary file and renamed into place."""
        with atomic_open(self.path / name) as handle:
            handle.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def csv_log(self, name: str, columns: list[str]) -> CsvLog:
        return CsvLog(self.path / name, columns)


class CsvLog:
    """An append-only CSV file with a header, flushed after every write."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        if not path.exists():
            with atomic_open(path, newline="") as handle:
                csv.writer(handle).writerow(columns)

    def append(self, *rows: dict[str, Any]) -> None:
        try:
            with open(self.path, "a", newline="", encoding="utf-8", errors="backslashreplace") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                writer.writerows(_format(row) for row in rows)
        except OSError as error:
            if error.errno in FULL:
                raise disk_full(self.path, error) from None
            raise

    def rows(self) -> list[dict[str, str]]:
        return read_table(self.path)

    def keep_rows(self, keep: Callable[[dict[str, str]], bool]) -> None:
        """Drop the rows `keep` rejects (work a crash lost), rewriting the file atomically; for --resume."""
        kept = [row for row in self.rows() if keep(row)]
        with atomic_open(self.path, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(kept)


def _format(row: dict[str, Any]) -> dict[str, Any]:
    """Floats with enough digits to be useful and few enough to read."""
    return {key: f"{value:.6g}" if isinstance(value, float) else value for key, value in row.items()}
