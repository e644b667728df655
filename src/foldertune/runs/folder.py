"""The run folder: the contract between commands, and the one module that names its files (docs/design.md).

    run = RunFolder.create("runs", None, default_name="mobilenet_v2-finetune")   # runs/mobilenet_v2-finetune[-2...]
    run.write_classes(["cat", "dog"])       # classes.json; run.classes() reads it back
    run.write_config(record)                # config.json; run.config() reads it back
    log = run.epochs_log()                  # epochs.csv, appended as training runs (flushed at once)
    run.best, run.last                      # the checkpoints' paths
    val = run.evaluation("val")             # eval/val/: val.metrics(), val.predictions_file, ...
    checkpoint_file, run = locate_checkpoint("runs/x")   # a run folder means its best.pt

Every JSON and CSV file is written atomically (temporary file + rename): a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foldertune.errors import UserError
from foldertune.runs.atomic import FULL, atomic_open, check_output, disk_full, is_inside, read_json, write_json
from foldertune.runs.tables import read_table

BATCH_COLUMNS = ["epoch", "step", "loss", "accuracy", "lr"]
EPOCH_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_acc_low",  # the 95% Wilson interval of val_acc
    "val_acc_high",
    "val_precision",
    "val_recall",
    "val_f1",
    "lr",
    "seconds",
    "images_per_s",
]
REPORT_COLUMNS = ["path", "class", "split", "problem", "reason"]
FIGURE_FORMATS = ("png", "pdf", "svg")  # every figure of a run folder is saved in one of these


def check_new_run(cfg) -> None:
    """Mistakes about paths that can be reported before a single image is read (a RunConfig in, nothing out)."""
    project = check_output(cfg.project, "--project", force=True, folder=True)  # a file there, or read-only
    if cfg.run_name is not None and (project / cfg.run_name).exists():
        raise UserError(name_taken(project / cfg.run_name))
    if cfg.data.root and Path(cfg.data.root).is_dir() and is_inside(project, cfg.data.root):
        raise UserError(
            f"run folders would go into the data folder ('{project.absolute()}' is inside '{cfg.data.root}'); run "
            "foldertune from another folder or pass --project DIR outside the data."
        )
    if cfg.model.weights and not Path(cfg.model.weights).expanduser().is_file():
        raise UserError(f"--weights file '{cfg.model.weights}' does not exist.")


def resumable_run(path: str | os.PathLike) -> RunFolder:
    """The run folder --resume names, once it is one and has a last.pt to continue from (no torch needed)."""
    run = RunFolder(Path(path).expanduser())
    if not run.is_run():
        raise UserError(f"--resume '{run.path}' is not a foldertune run folder (it has no config.json).")
    if not run.last.is_file():
        raise UserError(
            f"run '{run.path}' has no last.pt: it stopped before finishing an epoch, so there is nothing to continue; "
            "remove that folder and run the same command again, or start one with another --name."
        )
    return run


def name_taken(path: Path) -> str:
    """Why a new run cannot take the folder `path`, and what to do instead."""
    if RunFolder(path).is_run() and not RunFolder(path).last.is_file():  # a start that stopped before an epoch
        return (f"run folder '{path}' already exists but holds no finished epoch (no last.pt); pick another --name, "
                "or remove that folder and run again.")  # fmt: skip
    return f"run folder '{path}' already exists; pick another --name, or continue it with --resume {path}."


class RunFolder:
    """A run folder's files by name; reading a file that is not there raises the usual OSError."""

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
                raise UserError(name_taken(path)) from None
            return cls(path)
        for number in range(1, 10_000):
            path = project / (default_name if number == 1 else f"{default_name}-{number}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise UserError(f"'{project}' holds too many runs named {default_name}; pass --name.")

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------------------------------- the files

    @property
    def config_file(self) -> Path:
        """config.json: the settings, what they resolved to, the data, versions, machine, command, resumptions."""
        return self.path / "config.json"

    @property
    def classes_file(self) -> Path:
        """classes.json: {"0": name, ...}."""
        return self.path / "classes.json"

    @property
    def split_file(self) -> Path:
        """split.csv: path, class, split of every image the run uses."""
        return self.path / "split.csv"

    @property
    def data_report_file(self) -> Path:
        """data_report.csv: every file or class folder left out, and why."""
        return self.path / "data_report.csv"

    @property
    def data_check_file(self) -> Path:
        """data_check.csv: the data doctor's row for every file (--resume compares sizes and times with it)."""
        return self.path / "data_check.csv"

    @property
    def batches_file(self) -> Path:
        return self.path / "batches.csv"

    @property
    def epochs_file(self) -> Path:
        return self.path / "epochs.csv"

    @property
    def best(self) -> Path:
        """best.pt: the checkpoint of the best validation epoch."""
        return self.path / "best.pt"

    @property
    def last(self) -> Path:
        """last.pt: the latest checkpoint, with what --resume needs."""
        return self.path / "last.pt"

    @property
    def metrics_file(self) -> Path:
        """metrics.json: best.pt's numbers on each evaluated split."""
        return self.path / "metrics.json"

    @property
    def check_page_file(self) -> Path:
        """check.html of `foldertune check RUN --labels`: the label check of the run's split (report.html links it)."""
        return self.path / "check.html"

    @property
    def report_file(self) -> Path:
        return self.path / "report.html"

    @property
    def plots_dir(self) -> Path:
        """plots/: the training curves and the augmented-batch grid."""
        return self.path / "plots"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tb"

    @property
    def folds_file(self) -> Path:
        """folds.csv (--folds): path, class, fold of every image dealt into the cross-validation folds."""
        return self.path / "folds.csv"

    @property
    def cv_file(self) -> Path:
        """cv.json (--folds): every metric's mean and spread over the folds, and the pooled out-of-fold metrics."""
        return self.path / "cv.json"

    @property
    def cv_predictions_file(self) -> Path:
        """cv_predictions.csv (--folds): every image's out-of-fold prediction, as eval/<split>/predictions.csv with
        the fold that held it out."""
        return self.path / "cv_predictions.csv"

    @property
    def cv_logits_file(self) -> Path:
        """cv_logits.npy (--folds): (images, classes) float32 out-of-fold log-probabilities in cv_predictions.csv's
        order: logits up to a constant per image, which softmax and temperature scaling ignore."""
        return self.path / "cv_logits.npy"

    def fold(self, number: int) -> RunFolder:
        """fold-<number>/: one cross-validation run, a run folder of its own."""
        return RunFolder(self.path / f"fold-{number}")

    def folds(self) -> int | None:
        """The number of cross-validation folds the run was started with (config.json); None: not such a run."""
        if not self.config_file.is_file():
            return None
        return self.config()["settings"].get("train", {}).get("folds")

    def is_run(self) -> bool:
        """Whether the folder is a foldertune run folder (it has config.json)."""
        return self.config_file.is_file()

    def has_training_logs(self) -> bool:
        return self.config_file.is_file() and self.epochs_file.is_file()

    # ------------------------------------------------------------------------------------- reading, writing

    def config(self) -> dict[str, Any]:
        return read_json(self.config_file)

    def write_config(self, record: dict[str, Any]) -> None:
        write_json(self.config_file, record)

    def classes(self) -> list[str]:
        """Class names in index order."""
        return [name for _, name in sorted(read_json(self.classes_file).items(), key=lambda item: int(item[0]))]

    def write_classes(self, classes: list[str]) -> None:
        write_json(self.classes_file, dict(enumerate(classes)))

    def metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_file)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_file, metrics)

    def epochs(self) -> list[dict[str, str]]:
        return read_table(self.epochs_file)

    def batches(self) -> list[dict[str, str]]:
        return read_table(self.batches_file)

    def split_rows(self) -> list[dict[str, str]]:
        """split.csv's rows (path, class, split); empty when the folder has none."""
        return read_table(self.split_file) if self.split_file.is_file() else []

    def batches_log(self) -> CsvLog:
        return CsvLog(self.batches_file, BATCH_COLUMNS)

    def epochs_log(self) -> CsvLog:
        return CsvLog(self.epochs_file, EPOCH_COLUMNS)

    def data_report_log(self) -> CsvLog:
        return CsvLog(self.data_report_file, REPORT_COLUMNS)

    def evaluation(self, name: str) -> EvalFolder:
        """eval/<name>/: an evaluation's folder (val, test, or <folder>-<split> for another data folder)."""
        return EvalFolder(self.path / "eval" / name)

    def evaluations(self) -> list[EvalFolder]:
        """Every evaluation folder that holds an evaluation, by name."""
        return [EvalFolder(metrics.parent) for metrics in sorted((self.path / "eval").glob("*/metrics.json"))]


class EvalFolder:
    """An evaluation folder: the numbers of one checkpoint on one set of images, and the figures drawn from them.

    An evaluation replaces what an earlier one wrote here (`clear`), so no figure outlives the numbers it showed.
    """

    FILES = ("metrics.json", "per_class.csv", "predictions.csv", "confused_pairs.csv", "scores.npy", "embedding.csv")
    FIGURES = ("confusion_matrix", "confusion_matrix_normalized", "per_class", "pr_curves", "roc_curves",
               "reliability", "predictions", "top_losses", "cam_gallery", "feature_map")  # fmt: skip

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics_file(self) -> Path:
        """metrics.json: every overall figure, per-class numbers, confused pairs, classes, preprocessing."""
        return self.path / "metrics.json"

    @property
    def per_class_file(self) -> Path:
        return self.path / "per_class.csv"

    @property
    def predictions_file(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def confused_pairs_file(self) -> Path:
        return self.path / "confused_pairs.csv"

    @property
    def scores_file(self) -> Path:
        """scores.npy: (images, classes) probabilities, in the order of predictions.csv's readable rows."""
        return self.path / "scores.npy"

    @property
    def embedding_file(self) -> Path:
        return self.path / "embedding.csv"

    @property
    def cams_dir(self) -> Path:
        """cams/: Grad-CAM overlays and cams.csv, which lists them."""
        return self.path / "cams"

    def figure(self, stem: str, fmt: str = "png") -> Path:
        return self.path / f"{stem}.{fmt}"

    def exists(self) -> bool:
        return self.metrics_file.is_file()

    def metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_file)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_file, metrics)

    def has_figures(self) -> bool:
        """Evaluated with figures (False also when not evaluated at all, or numbers only)."""
        return self.exists() and bool(self.metrics().get("figures"))

    def clear(self) -> None:
        """Create the folder, or remove what an earlier evaluation wrote in it (and nothing else)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for path in self.path.iterdir():
            stem, fmt = path.stem, path.suffix.lstrip(".")
            if path.name in self.FILES or (stem in self.FIGURES and fmt in FIGURE_FORMATS):
                path.unlink()
        if self.cams_dir.is_dir():
            shutil.rmtree(self.cams_dir)


def locate_checkpoint(source: str | os.PathLike) -> tuple[Path, RunFolder]:
    """A checkpoint file and the run folder it belongs to: a run folder means its best.pt; a checkpoint file
    elsewhere is itself, and the folder it lies in serves as its run folder (evaluations go there)."""
    path = Path(source).expanduser()
    if path.is_dir():
        run = RunFolder(path)
        if not run.best.is_file() and not run.is_run():  # a data folder, say
            raise UserError(f"'{path}' is not a run folder (it has no config.json); pass a run folder that foldertune "
                            "train made, or its best.pt.")  # fmt: skip
        if not run.best.is_file() and run.folds() and not run.config()["settings"]["train"].get("refit"):
            raise UserError(
                f"'{path}' is a cross-validation run without a final model (it was trained without --refit); pass "
                f"one of its folds, such as {run.fold(1).path}, or train again with --folds and --refit."
            )
        if not run.best.is_file():
            raise UserError(f"run folder '{path}' has no best.pt yet; pass a checkpoint file or a finished run.")
        return run.best, run
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist; pass a run folder or a .pt file written by foldertune.")
    return path, RunFolder(path.parent)


class CsvLog:
    """An append-only CSV file with a header, flushed after every write. A file that exists keeps its own header
    (a run resumed by a newer foldertune, whose logs have more columns, goes on with the columns it started with)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        if path.exists():
            with open(path, newline="", encoding="utf-8") as handle:
                self.columns = next(csv.reader(handle), None) or columns
        else:
            with atomic_open(path, newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerow(columns)

    def append(self, *rows: dict[str, Any]) -> None:
        try:
            with open(self.path, "a", newline="", encoding="utf-8", errors="backslashreplace") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
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
            writer = csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept)


def _format(row: dict[str, Any]) -> dict[str, Any]:
    """Floats with enough digits to be useful and few enough to read."""
    return {key: f"{value:.6g}" if isinstance(value, float) else value for key, value in row.items()}
