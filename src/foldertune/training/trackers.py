"""Experiment trackers, both optional: Weights & Biases (`--wandb [PROJECT]`) and TensorBoard (`--tensorboard`).

    require_trackers(cfg)                        # a missing package is one sentence naming the extra to install
    trackers = Trackers.start(run, cfg, record)  # does nothing when neither is asked for
    trackers.log_steps(rows)                     # rows of batches.csv: train/loss, train/accuracy, lr per step
    trackers.log_epoch(row, step)                # a row of epochs.csv: train/* and val/* per epoch
    Trackers(live=LiveCurve())                   # the curves redrawn in a notebook cell (ft.train's `live`)
    trackers.finish(run, steps_per_epoch)        # figures, confusion matrix, sample images, best.pt (W&B artifact)

The CSV logs in the run folder stay the record; trackers get the same numbers, keyed by the global step. W&B
writes into RUN/wandb/ (offline with WANDB_MODE=offline; `wandb sync` uploads it later); a resumed run continues
the same W&B run. TensorBoard event files go to RUN/tb/ (`tensorboard --logdir runs/`).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from foldertune.config import RunConfig
from foldertune.errors import UserError
from foldertune.reporting.live_curve import LiveCurve
from foldertune.runs.folder import RunFolder

EPOCH_KEYS = {"train_loss": "train/epoch_loss", "train_acc": "train/epoch_accuracy", "val_loss": "val/loss",
              "val_acc": "val/accuracy", "val_precision": "val/precision", "val_recall": "val/recall",
              "val_f1": "val/f1", "images_per_s": "speed/images_per_s"}  # fmt: skip
RUN_FIGURES = ["loss", "metrics", "train_batch"]  # in RUN/plots/
VAL_FIGURES = ["confusion_matrix", "per_class", "predictions"]  # in RUN/eval/val/


def require_trackers(cfg: RunConfig) -> None:
    """Refuse before any work when a tracker was asked for but its package is missing."""
    for wanted, module, extra, flag in ((cfg.wandb, "wandb", "wandb", "--wandb"),
                                        (cfg.tensorboard, "tensorboard", "tensorboard", "--tensorboard")):  # fmt: skip
        if wanted and importlib.util.find_spec(module) is None:
            raise UserError(f"{flag} needs the {module} package: pip install 'foldertune[{extra}]' (or drop {flag}).")


class Trackers:
    def __init__(self, wandb_run: Any = None, writer: Any = None, live: LiveCurve | None = None) -> None:
        self.wandb_run = wandb_run
        self.writer = writer
        self.live = live  # the curves redrawn in a notebook cell

    @classmethod
    def start(cls, run: RunFolder, cfg: RunConfig, record: dict) -> Trackers:
        """Open the trackers `cfg` asks for; `record` (config.json) keeps the W&B run id, for --resume."""
        wandb_run = writer = None
        if cfg.wandb:
            import wandb

            try:
                wandb_run = wandb.init(
                    project=cfg.wandb, name=run.name, dir=str(run.path), config={**cfg.to_dict(), **record["resolved"]},
                    id=record.get("wandb_id"), resume="allow",
                )  # fmt: skip
            except wandb.errors.Error as error:  # no API key here, a refused one, no connection to the server
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
                raise UserError(f"--wandb could not start a W&B run ({reason}); run `wandb login`, or set "
                                "WANDB_MODE=offline to keep the logs in the run folder (`wandb sync` uploads them "
                                "later), or drop --wandb.") from None  # fmt: skip
            record["wandb_id"] = wandb_run.id
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(run.tensorboard_dir))
        return cls(wandb_run, writer)

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        if self.live is not None:
            self.live.add_steps(rows)
        for row in rows:
            values = {"train/loss": row["loss"], "train/accuracy": row["accuracy"], "lr": row["lr"]}
            self._log(values, row["step"])

    def log_epoch(self, row: dict[str, Any], step: int) -> None:
        if self.live is not None:
            self.live.add_epoch(row, step)
        values = {name: row[key] for key, name in EPOCH_KEYS.items()}
        self._log({**values, "epoch": row["epoch"]}, step)

    def finish(self, run: RunFolder, best: dict[str, Any], step: int) -> None:
        """The figures the run drew, the confusion matrix and sample images; best.pt as a W&B model artifact."""
        if self.live is not None:
            self.live.close()
        if self.writer is None and self.wandb_run is None:
            return
        from foldertune.reporting.plots.classification import plot_confusion
        from foldertune.reporting.plots.gallery import plot_train_batch

        val = run.evaluation("val")
        if val.exists() and not val.figure("confusion_matrix").exists():
            plot_confusion(val.path)  # drawn even with --no-report: TensorBoard shows it
        if not (run.plots_dir / "train_batch.png").exists():
            plot_train_batch(run.path)
        candidates = [run.plots_dir / f"{stem}.png" for stem in RUN_FIGURES] + [val.figure(s) for s in VAL_FIGURES]
        figures = {path.stem: path for path in candidates if path.exists()}
        if self.writer is not None:
            for name, path in figures.items():
                tag = "val/confusion_matrix" if "confusion" in name else f"figures/{name}"
                self.writer.add_image(tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")
            self.writer.close()
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({f"figures/{name}": wandb.Image(str(path)) for name, path in figures.items()},
                               step=step)  # fmt: skip
            artifact = wandb.Artifact(f"{run.name}-best", type="model", metadata=best)
            artifact.add_file(str(run.best))
            self.wandb_run.log_artifact(artifact)
            self.wandb_run.finish()

    @contextlib.contextmanager
    def closed_on_error(self) -> Iterator[None]:
        """An interruption or an error still flushes what was logged; --resume continues the same trackers."""
        try:
            yield
        except BaseException:
            if self.live is not None:
                self.live.close()
            if self.writer is not None:
                self.writer.close()
            if self.wandb_run is not None:
                self.wandb_run.finish(exit_code=1)
            raise

    def _log(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=step)
