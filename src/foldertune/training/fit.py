"""Training: `fit` a new run or `resume` one; the epoch loop then reads top to bottom in `_train`.

    run = fit(RunConfig.from_flat(data="photos/", mode="linear", epochs=5))   # -> Path of the run folder
    run = resume("runs/mobilenet_v2-linear")                                   # continues from last.pt

`_train` sets up (`_set_up`: model on its device, loaders, optimization, logs), restores last.pt's state for
--resume (`_restore`), then runs `_one_epoch` per epoch: train (loop.py's `train_one_epoch`), validate (loss,
accuracy, macro precision / recall / F1), append to epochs.csv, keep best.pt (by --best-metric) and last.pt (with
optimizer, schedule and scaler state, and the `Progress` toward early stopping), stop early. At the end best.pt is
evaluated on the validation and test splits, printed and saved as metrics.json. Epoch e's batch order,
augmentation and dropout are seeded from (seed, e), so a resumed run repeats exactly what the uninterrupted one
would have done on the CPU, also after Ctrl-C or SIGTERM part-way through an epoch (last.pt then holds a
`PartialEpoch`, state.py). Under torchrun (see distributed.py) every process runs this same code on its share of each
epoch; rank 0 alone writes the run folder and talks to the trackers (trackers.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from foldertune.config import RunConfig
from foldertune.data.check import CHECK_COLUMNS, changed_since
from foldertune.data.dataset import sample_seed
from foldertune.data.scan import verify_records
from foldertune.data.split import read_manifest, write_manifest
from foldertune.device import Runtime, choose_runtime
from foldertune.errors import UserError
from foldertune.models.build import (
    apply_mode,
    build_model,
    capture_head_input,
    head_of,
    ready_to_train,
    set_train_mode,
)
from foldertune.models.registry import get_backbone
from foldertune.models.weights import resolve_weights
from foldertune.preprocessing import Preprocessing
from foldertune.reporting.live_curve import LiveCurve
from foldertune.runs.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from foldertune.runs.folder import CsvLog, EvalFolder, RunFolder, check_new_run, resumable_run
from foldertune.runs.tables import write_table
from foldertune.training.distributed import Distributed
from foldertune.training.frozen_features import FeatureBatches
from foldertune.training.interrupt import LoaderWorkerDied, StopRequest, TrainingInterrupted, loader_worker_death
from foldertune.training.loaders import EpochBatches, build_feature_loaders, build_loaders, class_weights
from foldertune.training.loop import LoopContext, memory_hint, train_one_epoch, validate
from foldertune.training.optim import Optimization
from foldertune.training.prepare import PreparedData, prepare_data
from foldertune.training.run_record import command, config_record, now
from foldertune.training.state import EpochResult, PartialEpoch, Progress
from foldertune.training.trackers import Trackers

if TYPE_CHECKING:
    from foldertune.analysis.evaluation import KnownOutputs


def fit(
    cfg: RunConfig,
    *,
    data: PreparedData | None = None,
    quiet: bool = False,
    live: bool = False,
    verbose: bool = False,
    log=print,
    into: Path | None = None,
    keep_group: bool = False,
) -> Path:
    """Train a new run as `cfg` says (on `data`, when the caller has prepared it already); returns its run folder.
    `live` redraws the training curves in a notebook cell as the run goes; `verbose` prints where the time of the
    final evaluation and report went. `into`: an existing run folder to train in instead of a new one (the final
    model of a cross-validation run, --refit).

    Under torchrun, rank 0 prepares the data and the run folder and hands them to the other processes;
    `keep_group` leaves the process group joined afterwards (cross-validation trains one fold after another).
    """
    dist = Distributed.from_environment()
    if not dist.is_main:
        quiet, log = True, _silent
    runtime = choose_runtime(dist.device(cfg.train.device), cfg.train.precision)
    dist.start(runtime.device)

    def setup() -> tuple[PreparedData, dict | None, str]:
        if into is None:
            check_new_run(cfg)
        prepared = data if data is not None else prepare_data(cfg.data, seed=cfg.train.seed, progress=not quiet)
        log(prepared.summary())
        state_dict, weights_origin = None, "none (random initialisation)"
        if cfg.model.pretrained or cfg.model.weights:
            state_dict, weights_origin = resolve_weights(
                get_backbone(cfg.model.backbone), weights_file=cfg.model.weights, log=log
            )
        return prepared, state_dict, weights_origin

    data, state_dict, weights_origin = dist.from_main(setup)  # every rank: the same data and weights
    pre = get_backbone(cfg.model.backbone).preprocessing.with_crop_size(cfg.data.img_size)
    torch.manual_seed(cfg.train.seed)  # the new head's initialisation (and the whole network's in scratch mode)
    # built before the run folder exists: weights that do not fit leave no folder behind
    model = build_model(cfg.model.backbone, len(data.classes), state_dict=state_dict, img_size=pre.crop_size)

    def make_folder() -> Path:
        default_name = f"{cfg.model.backbone.replace('/', '-')}-{cfg.train.mode}"  # timm/NAME: timm-NAME-MODE
        run = RunFolder(into) if into is not None else RunFolder.create(cfg.project, cfg.run_name,
                                                                         default_name=default_name)  # fmt: skip
        run.write_classes(data.classes)
        write_manifest(run.split_file, data.records)
        report = run.data_report_log()
        report.append(*data.report_rows())
        if data.check is not None:
            write_table(run.data_check_file, CHECK_COLUMNS, data.check.rows())
        return run.path

    run = RunFolder(dist.from_main(make_folder))  # every rank: the same folder
    record = config_record(cfg, runtime, pre, data, weights_origin)
    if dist.enabled:
        record["distributed"] = dist.describe()
    if dist.is_main:
        run.write_config(record)
    log(f"run folder: {run.path}")
    log(f"device: {runtime.describe()}; weights: {weights_origin}" + _processes(dist, cfg.train.batch_size))

    return _train(Job(run, cfg, data, runtime, pre, dist, quiet, log, live, verbose, keep_group), model, start=None)


def resume(
    run_path: str | os.PathLike,
    *,
    epochs: int | None = None,
    device: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    live: bool = False,
    verbose: bool = False,
    log=print,
    keep_group: bool = False,
) -> Path:
    """Continue a run from its last.pt: same split, weights, optimizer and schedule state; more epochs if given.

    Under torchrun every process reads last.pt (the run folder must be reachable from every node); rank 0 checks
    the data again and hands the result to the others.
    """
    dist = Distributed.from_environment()
    if not dist.is_main:
        quiet, log = True, _silent
    run = resumable_run(run_path)
    record = run.config()
    cfg = RunConfig.from_dict(record["settings"])
    checkpoint = load_checkpoint(run.last)
    planned = cfg.train.epochs
    changes = {"epochs": epochs, "device": device}
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **{k: v for k, v in changes.items() if v}))
    if workers is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, workers=workers))
    _check_resumable(run, cfg, checkpoint, dist)
    runtime = choose_runtime(dist.device(cfg.train.device), cfg.train.precision)
    dist.start(runtime.device)

    classes = checkpoint["classes"]
    data = PreparedData(record["data"]["source"], classes, dist.from_main(lambda: _check_data(run, cfg, quiet)))
    pre = Preprocessing.from_dict(checkpoint["preprocessing"])
    record["settings"] = cfg.to_dict()
    record.setdefault("resumed", []).append({"from_epoch": checkpoint["epoch"], "time": now(), "command": command(),
                                             "processes": dist.world_size})  # fmt: skip
    if dist.is_main:
        run.write_config(record)
    partial = _interrupted(checkpoint)
    within = f", step {partial.steps} of epoch {checkpoint['epoch'] + 1}" if partial else ""
    log(f"resuming {run.path} after epoch {checkpoint['epoch']} of {cfg.train.epochs}{within}; device: "
        f"{runtime.describe()}" + _processes(dist, cfg.train.batch_size))  # fmt: skip
    if cfg.train.epochs != planned and cfg.train.scheduler == "cosine":
        log(f"--epochs {cfg.train.epochs} instead of {planned}: the learning rate follows the cosine schedule of a "
            f"{cfg.train.epochs}-epoch run from here on")  # fmt: skip

    model = build_model(cfg.model.backbone, len(classes), img_size=pre.crop_size)
    model.load_state_dict(checkpoint["model"])
    return _train(Job(run, cfg, data, runtime, pre, dist, quiet, log, live, verbose, keep_group), model,
                  start=checkpoint)  # fmt: skip


class RunFinished(UserError):
    """--resume of a run that has nothing left to train (its epochs are done, or early stopping ended it)."""


def _epochs(count: int) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def _check_resumable(run: RunFolder, cfg: RunConfig, checkpoint: dict, dist: Distributed) -> None:
    """The mistakes that make a run impossible to continue as asked, each as one sentence with the way out."""
    if checkpoint["epoch"] >= cfg.train.epochs:
        raise RunFinished(
            f"run '{run.path}' already finished: it trained all {_epochs(checkpoint['epoch'])}; pass --epochs with a "
            "larger number to train further."
        )
    stale = Progress.from_state_dict(checkpoint["training"]["progress"]).stale
    if cfg.train.patience and stale >= cfg.train.patience:
        raise RunFinished(
            f"run '{run.path}' stopped early after epoch {checkpoint['epoch']} (no better validation "
            f"{cfg.train.best_metric} for {_epochs(stale)}), so it is finished; to go on, start a new run with "
            f"--weights {run.best}."
        )
    if run.classes() != checkpoint["classes"]:
        raise UserError(f"classes.json and last.pt of '{run.path}' disagree on the classes; the run folder was edited.")
    processes = checkpoint["training"].get("world_size", 1)
    if processes != dist.world_size:  # the steps per epoch, hence the schedule and the logs, depend on it
        raise UserError(
            f"run '{run.path}' was trained with {processes} process(es); resume it with the same number (this is "
            f"{dist.world_size}): the learning-rate schedule counts steps per epoch; or start a new run with --weights."
        )


def _check_data(run: RunFolder, cfg: RunConfig, quiet: bool) -> list:
    """The run's split.csv records, once every image is checked to be there and unchanged since the run started."""
    listed = read_manifest(run.split_file)
    records, unreadable, info = verify_records(listed, max_pixels=cfg.data.max_pixels, workers=None,
                                               progress=not quiet)  # fmt: skip
    if unreadable:
        raise UserError(
            f"{len(unreadable)} image(s) of this run's split.csv are gone or unreadable since it started (first: "
            f"{unreadable[0].path}); resuming needs the same data: restore them or start a new run."
        )
    changed = changed_since(run.data_check_file, info)
    if changed:
        timed = " with their modification times (cp -p, rsync -t)" if changed[0].endswith("modified since") else ""
        raise UserError(
            f"{len(changed)} image(s) of this run changed since it started (first: {changed[0]}); resuming on "
            f"other data would not continue the same training: restore them{timed}, or start a new run."
        )
    return records


def _interrupted(checkpoint: dict) -> PartialEpoch | None:
    """last.pt's epoch that Ctrl-C or SIGTERM stopped part-way, if any."""
    state = checkpoint["training"].get("interrupted")
    return PartialEpoch.from_state_dict(state) if state else None


def _silent(*_args, **_kwargs) -> None:
    """The log of processes other than rank 0: one process speaks for the run."""


def _processes(dist: Distributed, batch_size: int) -> str:
    if not dist.enabled:
        return ""
    return (
        f"; {dist.world_size} processes ({dist.backend}), global batch {dist.world_size} x {batch_size} = "
        f"{dist.world_size * batch_size}"
    )


@dataclass
class Job:
    """One run as this process executes it: folder, settings, data, where and how it computes, what it prints."""

    run: RunFolder
    cfg: RunConfig
    data: PreparedData
    runtime: Runtime
    pre: Preprocessing  # the backbone's, at --img-size; checkpoints record it
    dist: Distributed
    quiet: bool  # no progress bars
    log: Callable[[str], object]  # print on rank 0, silent on the others
    live: bool = False  # redraw the curves in a notebook cell (rank 0)
    verbose: bool = False  # also print where the time of the final evaluation and report goes
    keep_group: bool = False  # stay in the process group at the end (torchrun: more folds to train)

    def save(self, path: Path, model: nn.Module, epoch: int, metrics: dict, training: dict | None = None) -> None:
        """A checkpoint of `model` after `epoch`, written by rank 0; a failure there (a full disk) stops every
        process alike."""
        content = make_checkpoint(
            model, backbone=self.cfg.model.backbone, classes=self.data.classes, preprocessing=self.pre,
            config=self.cfg.to_dict(), epoch=epoch, metrics=metrics, training=training,
        )  # fmt: skip
        self.dist.from_main(lambda: save_checkpoint(path, content))


@dataclass
class Training:
    """What the epoch loop works with: the network in its three roles, loaders, optimization and logs, and the state
    that --resume restores and every epoch updates."""

    model: nn.Module  # the whole network: last.pt holds it
    network: nn.Module  # what the steps run: the model, or its head on cached features; wrapped for DDP / compile
    validated: nn.Module  # `network` unwrapped (or the same part of --ema's average): validation has no gradients
    kept: nn.Module  # what best.pt holds: `model`, or with --ema its average
    loaders: dict[str, DataLoader | FeatureBatches]  # train, val
    opt: Optimization
    batch_log: CsvLog | None  # batches.csv and epochs.csv: rank 0 alone writes the run folder
    epoch_log: CsvLog | None
    setup_seconds: float  # features or --cache filled before the first epoch: counted in its time
    first_epoch: int = 1
    progress: Progress = field(default_factory=Progress)
    metrics: dict[str, float] = field(default_factory=dict)  # the last validation (last.pt of a cut epoch keeps it)
    partial: PartialEpoch | None = None  # the epoch that an interruption cut short, to continue
    phase: str = ""  # the transfer mode the parameters are set for: --head-warmup trains in linear mode first
    ahead: EpochBatches | None = None  # the next epoch's training pass, begun before this one's validation
    best_validation: KnownOutputs | None = None  # the best epoch's validation, when the final evaluation can reuse it

    def state_dict(self, world_size: int, interrupted: PartialEpoch | None = None) -> dict:
        """last.pt's "training": what continuing exactly needs beyond the weights."""
        state = {**self.opt.state_dict(), "progress": self.progress.state_dict(), "world_size": world_size}
        if interrupted is not None:
            state["interrupted"] = interrupted.state_dict()
        return state


def _train(job: Job, model: nn.Module, *, start: dict | None) -> Path:
    """The epoch loop: set up, restore last.pt's state for --resume, train / validate / save every epoch (until
    early stopping), then evaluate best.pt. Every process runs it; rank 0 alone writes the run folder."""
    run, dist, tc = job.run, job.dist, job.cfg.train
    training = _set_up(job, model)
    if start is not None:
        _restore(training, start)
    trackers = _start_trackers(job)
    ctx = LoopContext(job.runtime, job.pre, dist, epochs=tc.epochs, batch_log=training.batch_log, trackers=trackers,
                      quiet=job.quiet)  # fmt: skip
    with trackers.closed_on_error():
        with StopRequest() as stop:
            epoch = training.first_epoch
            try:
                for epoch in range(training.first_epoch, tc.epochs + 1):
                    if not _one_epoch(job, training, ctx, epoch, stop):
                        break  # early stop
            except Exception as error:  # a loader process died: torch's report, or a batch it was sending, broken
                died = loader_worker_death(error)
                if died is None:
                    raise
                raise LoaderWorkerDied(died, run.path, f"in epoch {epoch}") from None

        if not job.keep_group:
            dist.close()
        if not dist.is_main:
            return run.path  # rank 0 alone evaluates best.pt and writes the report
        steps = epoch * len(training.loaders["train"])
        training.ahead = None  # an early stop leaves the next epoch begun
        training.loaders.clear()  # the loader processes end here: their memory is free for the evaluation's work
        _final_evaluation(run, job, training.progress.best_epoch, known=training.best_validation)
        trackers.finish(run, best=run.metrics(), step=steps)
    job.log(f"run folder: {run.path}")
    return run.path


def _set_up(job: Job, model: nn.Module) -> Training:
    """The model on its device in the run's transfer mode, the loaders, what trains, the optimization, the logs."""
    cfg, runtime, dist = job.cfg, job.runtime, job.dist
    swapped = ready_to_train(model, cfg.model.backbone, cfg.train.mode, runtime)
    if swapped and job.verbose:
        job.log(f"{swapped} depthwise layers train with a faster bf16 backward (docs/design.md, Speed on the CPU)")
    started = time.perf_counter()
    if cfg.train.mode == "linear" and cfg.train.feature_cache != "off":
        # the frozen backbone runs once per image; epochs train the head on the stored features
        loaders = build_feature_loaders(model, job.data, job.pre, cfg, runtime, dist, quiet=job.quiet, log=job.log)
        network = head_of(model, cfg.model.backbone)
    else:
        loaders = build_loaders(job.data, job.pre, cfg, runtime, dist, progress=not job.quiet)
        network = model
    setup_seconds = time.perf_counter() - started
    labels = [label for _, label in job.data.samples("train")]
    opt = Optimization.build(model, cfg.train, runtime, steps_per_epoch=len(loaders["train"].batch_sampler),
                             class_weights=class_weights(labels, len(job.data.classes)),
                             head=get_backbone(cfg.model.backbone).head)  # fmt: skip
    kept, validated = model, network
    if opt.ema is not None:  # validation and best.pt: the average's network (or its head, on cached features)
        kept = opt.ema.module
        validated = kept if network is model else head_of(kept, cfg.model.backbone)
    batch_log = job.run.batches_log() if dist.is_main else None
    epoch_log = job.run.epochs_log() if dist.is_main else None
    return Training(model, _wrapped(network, job), validated, kept, loaders, opt, batch_log, epoch_log, setup_seconds,
                    phase=cfg.train.mode)  # fmt: skip


def _wrapped(network: nn.Module, job: Job) -> nn.Module:
    """What the steps run: under torchrun, DDP (gradients averaged over the processes at every step, rank 0's
    weights to start with); with --compile, compiled."""
    if job.dist.enabled:
        device_ids = [job.runtime.device.index] if job.runtime.device.type == "cuda" else None
        network = nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
    if job.cfg.train.compile:
        network = torch.compile(network)
    return network


def _restore(training: Training, start: dict) -> None:
    """--resume: last.pt's optimization state and progress, and the logs cut back to what last.pt holds."""
    training.opt.load_state_dict(start["training"])
    training.progress = Progress.from_state_dict(start["training"]["progress"])
    training.first_epoch, training.metrics = start["epoch"] + 1, start["metrics"]
    training.partial = _interrupted(start)
    last_step = start["epoch"] * len(training.loaders["train"]) + (training.partial.steps if training.partial else 0)
    if training.batch_log is not None:  # rows a crash logged after the checkpoint
        training.batch_log.keep_rows(lambda row: int(row["step"]) <= last_step)
    if training.epoch_log is not None:
        training.epoch_log.keep_rows(lambda row: int(row["epoch"]) <= start["epoch"])


def _start_trackers(job: Job) -> Trackers:
    """W&B, TensorBoard and the notebook's live curves, on rank 0, when asked for (otherwise a Trackers that does
    nothing)."""
    live = LiveCurve() if job.live and job.dist.is_main else None
    if not (job.dist.is_main and (job.cfg.wandb or job.cfg.tensorboard)):
        return Trackers(live=live)
    record = job.run.config()
    trackers = Trackers.start(job.run, job.cfg, record)
    trackers.live = live
    job.run.write_config(record)  # with the W&B run id, so that --resume continues that run
    return trackers


def _one_epoch(job: Job, training: Training, ctx: LoopContext, epoch: int, stop: StopRequest) -> bool:
    """Train and validate one epoch, log it, keep best.pt and last.pt; False when early stopping ends the run."""
    run, tc, dist = job.run, job.cfg.train, job.dist
    trained = _train_pass(job, training, ctx, epoch, stop)
    if trained.interrupted is not None:  # last.pt: the weights and state after the last step trained
        job.save(run.last, training.model, epoch - 1, training.metrics,
                 training.state_dict(dist.world_size, interrupted=trained.interrupted))  # fmt: skip
        where = f"at epoch {epoch}, step {trained.interrupted.steps} of {len(training.loaders['train'])}"
        raise TrainingInterrupted(stop.signum or signal.SIGTERM, run.path, where)  # or another process's signal
    if epoch < tc.epochs:  # the loader workers read its first batches while this process validates and saves
        training.ahead = EpochBatches(training.loaders["train"], epoch + 1)
    if epoch == training.first_epoch:
        trained.seconds += training.setup_seconds
        if tc.compile:
            job.log(f"torch.compile: the first step took {trained.first_step_seconds:.1f} s (compiling)")
    if "val" in training.loaders:
        dist.sync_buffers(training.validated)  # BatchNorm statistics as rank 0 saves them
        reused = _validation_reusable(job, training)
        capture = (
            capture_head_input(training.validated, job.cfg.model.backbone) if reused else contextlib.nullcontext([])
        )
        with memory_hint(job.runtime, tc.batch_size, epoch), capture as features:
            validation = validate(training.validated, training.loaders["val"], ctx)
        val = validation.summary()
        improved = training.progress.record(val[tc.best_metric], epoch)
        if improved and reused:  # what the final evaluation of best.pt would compute again
            from foldertune.analysis.evaluation import KnownOutputs

            paths = [path for path, _ in job.data.samples("val")]
            training.best_validation = KnownOutputs(paths, validation.logits, torch.cat(features).float().numpy())
    else:  # the final model of --refit sees every image in training: the latest epoch is the model
        val = dict.fromkeys(("loss", "accuracy", "accuracy_low", "accuracy_high", "precision", "recall", "f1",
                             "balanced_accuracy"), math.nan)  # fmt: skip
        improved = training.progress.record(float(epoch), epoch)
    training.metrics, lr = val, trained.lr  # the rate the epoch's last step used, as batches.csv logs it
    row = _epoch_row(epoch, trained, val, lr)
    if dist.is_main:
        training.epoch_log.append(row)
        ctx.trackers.log_epoch(row, step=epoch * len(training.loaders["train"]))
    if improved:
        job.save(run.best, training.kept, epoch, val)
    job.save(run.last, training.model, epoch, val, training.state_dict(dist.world_size))
    _print_epoch(job.log, epoch, tc.epochs, trained, val, lr, improved)
    if dist.any(stop.requested) and epoch < tc.epochs:  # the signal came during validation or saving
        raise TrainingInterrupted(stop.signum or signal.SIGTERM, run.path, f"after epoch {epoch}")
    if tc.patience and training.progress.stale >= tc.patience:
        job.log(f"early stop: no better validation {tc.best_metric} for {_epochs(tc.patience)} (best: epoch "
                f"{training.progress.best_epoch})")  # fmt: skip
        return False
    return True


def _validation_reusable(job: Job, training: Training) -> bool:
    """Whether an epoch's validation is what the final evaluation of its best.pt computes: the whole network in eval
    mode and fp32 on the evaluation view of every validation image, in this one process. Not in linear mode with the
    feature cache (its features are computed in the run's precision) nor under torchrun (each process validates a
    share)."""
    return not job.dist.enabled and not isinstance(training.loaders["val"], FeatureBatches)


def _train_pass(job: Job, training: Training, ctx: LoopContext, epoch: int, stop: StopRequest) -> EpochResult:
    """Seed the epoch from (seed, epoch), or continue where an interruption left it; then train it."""
    tc = job.cfg.train
    partial, training.partial = training.partial, None
    if partial is not None:  # the dropout generator and the batches where the interruption left them
        torch.set_rng_state(partial.rng_of(job.dist.rank))
    else:  # dropout and other randomness in the model; each process its own stream
        torch.manual_seed(sample_seed(tc.seed, epoch, 0) + 2 + 7919 * job.dist.rank)
    batches, training.ahead = training.ahead, None
    if batches is None:  # the first epoch, or one that continues an interrupted pass
        batches = EpochBatches(training.loaders["train"], epoch, skip=partial.steps if partial else 0)
    phase = "linear" if epoch <= tc.head_warmup else tc.mode  # --head-warmup: the head alone first
    if phase != training.phase:  # what requires gradients changes, and DDP registers that when it wraps the network
        apply_mode(training.model, job.cfg.model.backbone, phase)
        training.network, training.phase = _wrapped(training.model, job), phase
    set_train_mode(training.model, job.cfg.model.backbone, phase)  # in linear mode the frozen backbone stays eval
    with memory_hint(job.runtime, tc.batch_size, epoch):
        return train_one_epoch(training.network, batches, training.opt, ctx, epoch=epoch, partial=partial, stop=stop)


def _epoch_row(epoch: int, trained: EpochResult, val: dict[str, float], lr: float) -> dict:
    """A row of epochs.csv (and the trackers' epoch values)."""
    return {"epoch": epoch, "train_loss": trained.loss, "train_acc": trained.accuracy, "val_loss": val["loss"],
            "val_acc": val["accuracy"], "val_acc_low": val["accuracy_low"], "val_acc_high": val["accuracy_high"],
            "val_precision": val["precision"], "val_recall": val["recall"],
            "val_f1": val["f1"], "lr": lr, "seconds": trained.seconds,
            "images_per_s": trained.images_per_s}  # fmt: skip


RESULT_KEYS = ("accuracy_low", "accuracy_high", "balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high",
               "macro_f1", "macro_f1_low", "macro_f1_high", "temperature", "ece", "ece_before")  # fmt: skip


def _final_evaluation(run: RunFolder, job: Job, best_epoch: int, *, known: KnownOutputs | None = None) -> None:
    """best.pt on the validation (and test) split: evaluation folders, metrics.json, and the report if asked. The
    validation split's evaluation first fits the temperature and stores it in best.pt, so the test split's
    probabilities, and every later prediction, are calibrated. The seconds each part took go to config.json
    ("end_of_run"), and to the log with --verbose. `known`: the best epoch's validation outputs, which the
    validation split's evaluation then takes instead of running the network again."""
    from foldertune.analysis.evaluation import evaluate_checkpoint, summary_line
    from foldertune.inference.classifier import Classifier
    from foldertune.training.unknown_reference import add_unknown_reference

    cfg, data, log = job.cfg, job.data, job.log
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    log(f"\nbest.pt (epoch {best_epoch}{'' if data.count('val') else ', the last: no validation split'}):")
    # one network for every pass below. The evaluation runs it in fp32: in bf16, 2 of 97 predictions of a 1-epoch
    # model flipped (near ties), so its metrics would differ from a later `foldertune evaluate`
    best = load_checkpoint(run.best)
    classifier = Classifier(best, device=cfg.train.device)
    seconds["network"] = time.perf_counter() - started  # the evaluations add their passes to it
    results = {"best_epoch": best_epoch, "checkpoint": run.best.name}
    for split in ("val", "test"):
        if data.count(split) == 0:
            continue
        out = evaluate_checkpoint(run.path, split=split, device=cfg.train.device, figures=cfg.report,
                                  calibrate=split == "val", progress=not job.quiet, log=lambda *_: None,
                                  seconds=seconds, classifier=classifier,
                                  known=known if split == "val" else None)  # fmt: skip
        evaluation = EvalFolder(out).metrics()
        overall = evaluation["overall"]
        results[split] = {
            "accuracy": overall["accuracy"],
            "precision": overall["macro_precision"],
            "recall": overall["macro_recall"],
            "f1": overall["macro_f1"],
            "loss": overall["loss"],
            "images": overall["images"],
            **{key: overall[key] for key in RESULT_KEYS},
            "per_class": evaluation["per_class"],
        }
        log(f"  {split:<4} {summary_line(overall, balanced_first=imbalanced(data))}")  # as `evaluate` prints it
        if split == "val":  # the epoch's validation ran on cached features, or in shares under torchrun
            cached = cfg.train.mode == "linear" and cfg.train.feature_cache != "off"
            note = other_accuracy_note(best_epoch, best["metrics"].get("accuracy"), overall,
                                       job.runtime.precision if cached else None)  # fmt: skip
            if note:
                log(note)
    if "val" in results:
        val = results["val"]
        log(f"  calibration: temperature {val['temperature']:.2f} fitted on val; expected calibration error "
            f"{val['ece_before']:.3f} -> {val['ece']:.3f}")  # fmt: skip

    part = time.perf_counter()
    add_unknown_reference(run, cfg, data, quiet=job.quiet, classifier=classifier)  # what unknown_score compares with
    seconds["unknown reference"] = time.perf_counter() - part
    run.write_metrics(results)
    if cfg.report:
        from foldertune.reporting.html_report import write_report
        from foldertune.reporting.plots import plot_run

        part = time.perf_counter()
        plot_run(run.path)  # the training curves and every evaluation's figures
        seconds["figures"] = time.perf_counter() - part
        part = time.perf_counter()
        write_report(run.path, log=lambda *_: None)
        seconds["report"] = time.perf_counter() - part
        log(f"report: {run.report_file}")
    seconds = {"total": time.perf_counter() - started, **seconds}
    record = run.config()
    record["end_of_run"] = {part: round(value, 3) for part, value in seconds.items()}
    run.write_config(record)
    if job.verbose:
        log("end of run: " + ", ".join(f"{part} {value:.1f} s" for part, value in seconds.items()))


def other_accuracy_note(epoch: int, during: float | None, overall: dict, features: str | None) -> str | None:
    """The line that explains why best.pt's evaluation (fp32, the whole network: `overall`) gets another validation
    accuracy than its epoch did during training (`during`), or None when they agree. `features`: the precision the
    epoch's validation features were computed in, when they came from linear mode's feature cache."""
    if during is None or math.isnan(during):
        return None
    images = overall["images"]
    gained = round((overall["accuracy"] - during) * images)
    if gained == 0:
        return None
    on = f", on features computed in {features}" if features and features != "fp32" else ""
    count, ties = ("1 image", "a near tie") if abs(gained) == 1 else (f"{abs(gained)} images", "near ties")
    return (f"       (epoch {epoch} scored {during:.3f} during training{on}; best.pt in fp32 gets {count} "
            f"{'more' if gained > 0 else 'fewer'} of {images} right: {ties})")  # fmt: skip


IMBALANCE_RATIO = 3  # largest over smallest training class at which the summary leads with balanced accuracy


def imbalanced(data: PreparedData) -> bool:
    """Whether the largest training class has at least IMBALANCE_RATIO times the images of the smallest."""
    counts = [count for count in np.bincount([label for _, label in data.samples("train")]) if count]
    return bool(counts) and max(counts) >= IMBALANCE_RATIO * min(counts)


def _print_epoch(log, epoch: int, epochs: int, trained: EpochResult, val: dict, lr: float, improved: bool) -> None:
    validated = (
        "no validation"
        if math.isnan(val["loss"])
        else (f"val loss {val['loss']:.4f} acc {val['accuracy']:.3f} macro_f1 {val['f1']:.3f}")
    )
    log(
        f"epoch {epoch:>{len(str(epochs))}}/{epochs}  train loss {trained.loss:.4f} acc {trained.accuracy:.3f}"
        f"  | {validated}  | lr {lr:.2e}  {trained.seconds:.1f}s {trained.images_per_s:.0f} img/s"
        + ("  *best" if improved and not math.isnan(val["loss"]) else "")
    )


def finish(run_path: str | os.PathLike, *, quiet: bool = False, log=print) -> Path:
    """The final evaluation of a run whose epochs are all trained but which stopped before metrics.json was written
    (a signal during the evaluation); rank 0's work."""
    run = RunFolder(run_path)
    cfg = RunConfig.from_dict(run.config()["settings"])
    progress = Progress.from_state_dict(load_checkpoint(run.last)["training"]["progress"])
    data = PreparedData(run.config()["data"]["source"], run.classes(), read_manifest(run.split_file))
    runtime = choose_runtime(cfg.train.device, cfg.train.precision)
    pre = Preprocessing.from_dict(load_checkpoint(run.best)["preprocessing"])
    _final_evaluation(run, Job(run, cfg, data, runtime, pre, Distributed(), quiet, log), progress.best_epoch)
    return run.path
