"""Training: `fit` a new run or `resume` one; the epoch loop reads top to bottom in `_train` (its two steps,
`train_one_epoch` and `evaluate`, are in loop.py).

    run = fit(RunConfig.from_flat(data="photos/", mode="linear", epochs=5))   # -> Path of the run folder
    run = resume("runs/mobilenet_v2-linear")                                   # continues from last.pt

Every epoch: train, validate (loss, accuracy, macro precision / recall / F1), append to epochs.csv, keep best.pt
(by --best-metric) and last.pt (with optimizer, schedule and scaler state). At the end best.pt is evaluated on the
validation and test splits, printed and saved as metrics.json. Epoch e's batch order, augmentation and dropout
are seeded from (seed, e), so a resumed run repeats exactly what the uninterrupted one would have done on the CPU.
Under torchrun (see distributed.py) every process runs this same code on its share of each epoch; rank 0 alone
writes the run folder and talks to the trackers (trackers.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from pathlib import Path

import torch
from torch import nn

from foldertune.config import RunConfig
from foldertune.data.check import CHECK_COLUMNS, changed_since
from foldertune.data.dataset import sample_seed
from foldertune.data.scan import verify_records
from foldertune.data.split import read_manifest, write_manifest
from foldertune.device import Runtime, choose_runtime
from foldertune.errors import UserError
from foldertune.models.build import apply_mode, build_model, head_of, set_train_mode
from foldertune.models.registry import get_backbone
from foldertune.models.weights import resolve_weights
from foldertune.preprocessing import Preprocessing
from foldertune.runs.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from foldertune.runs.folder import EvalFolder, RunFolder, check_new_run
from foldertune.runs.tables import write_table
from foldertune.training.distributed import Distributed
from foldertune.training.interrupt import StopRequest, TrainingInterrupted
from foldertune.training.loaders import build_feature_loaders, build_loaders
from foldertune.training.loop import evaluate, memory_hint, train_one_epoch
from foldertune.training.optim import build_optimizer, build_scheduler
from foldertune.training.prepare import PreparedData, prepare_data
from foldertune.training.run_record import command, config_record, now
from foldertune.training.trackers import Trackers


def fit(cfg: RunConfig, *, data: PreparedData | None = None, quiet: bool = False, log=print) -> Path:
    """Train a new run as `cfg` says (on `data`, when the caller has prepared it already); returns its run folder.

    Under torchrun, rank 0 prepares the data and the run folder and hands them to the other processes.
    """
    dist = Distributed.from_environment()
    if not dist.is_main:
        quiet, log = True, _silent
    runtime = choose_runtime(dist.device(cfg.train.device), cfg.train.precision)
    dist.start(runtime.device)

    def setup() -> tuple[PreparedData, Path, dict | None, str]:
        check_new_run(cfg)
        prepared = data if data is not None else prepare_data(cfg.data, seed=cfg.train.seed, progress=not quiet)
        log(prepared.summary())
        state_dict, weights_origin = None, "none (random initialisation)"
        if cfg.model.pretrained or cfg.model.weights:
            state_dict, weights_origin = resolve_weights(
                get_backbone(cfg.model.backbone), weights_file=cfg.model.weights, log=log
            )
        run = RunFolder.create(cfg.project, cfg.run_name, default_name=f"{cfg.model.backbone}-{cfg.train.mode}")
        run.write_classes(prepared.classes)
        write_manifest(run.split_file, prepared.records)
        report = run.data_report_log()
        report.append(*prepared.report_rows())
        if prepared.check is not None:
            write_table(run.data_check_file, CHECK_COLUMNS, prepared.check.rows())
        return prepared, run.path, state_dict, weights_origin

    data, path, state_dict, weights_origin = dist.from_main(setup)  # every rank: the same data, folder and weights
    run = RunFolder(path)
    pre = get_backbone(cfg.model.backbone).preprocessing.with_crop_size(cfg.data.img_size)
    record = config_record(cfg, runtime, pre, data, weights_origin)
    if dist.enabled:
        record["distributed"] = dist.describe()
    if dist.is_main:
        run.write_config(record)
    log(f"run folder: {run.path}")
    log(f"device: {runtime.describe()}; weights: {weights_origin}" + _processes(dist, cfg.train.batch_size))

    torch.manual_seed(cfg.train.seed)  # the new head's initialisation (and the whole network's in scratch mode)
    model = build_model(cfg.model.backbone, len(data.classes), state_dict=state_dict)
    return _train(run, cfg, data, model, runtime, pre, dist, start=None, quiet=quiet, log=log)


def resume(
    run_path: str | os.PathLike,
    *,
    epochs: int | None = None,
    device: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    log=print,
) -> Path:
    """Continue a run from its last.pt: same split, weights, optimizer and schedule state; more epochs if given.

    Under torchrun every process reads last.pt (the run folder must be reachable from every node); rank 0 checks
    the data again and hands the result to the others.
    """
    dist = Distributed.from_environment()
    if not dist.is_main:
        quiet, log = True, _silent
    run = RunFolder(Path(run_path).expanduser())
    if not run.is_run():
        raise UserError(f"--resume '{run.path}' is not a foldertune run folder (it has no config.json).")
    if not run.last.is_file():
        raise UserError(f"run '{run.path}' has no last.pt: it stopped before finishing an epoch; start a new run.")
    record = run.config()
    cfg = RunConfig.from_dict(record["settings"])
    checkpoint = load_checkpoint(run.last)
    changes = {"epochs": epochs, "device": device}
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **{k: v for k, v in changes.items() if v}))
    if workers is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, workers=workers))
    if checkpoint["epoch"] >= cfg.train.epochs:
        raise UserError(
            f"run '{run.path}' already finished its {checkpoint['epoch']} epochs; pass --epochs with a larger number "
            "to train further."
        )

    stale = checkpoint["training"]["progress"]["stale"]
    if cfg.train.patience and stale >= cfg.train.patience:
        raise UserError(
            f"run '{run.path}' stopped early after epoch {checkpoint['epoch']} (no better validation "
            f"{cfg.train.best_metric} for {stale} epochs), so it is finished; to go on, start a new run with "
            f"--weights {run.best}."
        )
    classes = run.classes()
    if classes != checkpoint["classes"]:
        raise UserError(f"classes.json and last.pt of '{run.path}' disagree on the classes; the run folder was edited.")
    partial = checkpoint["training"].get("interrupted")
    processes = checkpoint["training"].get("world_size", 1)
    if processes != dist.world_size:  # the steps per epoch, hence the schedule and the logs, depend on it
        raise UserError(
            f"run '{run.path}' was trained with {processes} process(es); resume it with the same number (this is "
            f"{dist.world_size}): the learning-rate schedule counts steps per epoch; or start a new run with --weights."
        )
    runtime = choose_runtime(dist.device(cfg.train.device), cfg.train.precision)
    dist.start(runtime.device)

    def check_data() -> list:
        listed = read_manifest(run.split_file)
        records, unreadable, info = verify_records(
            listed, max_pixels=cfg.data.max_pixels, workers=None, progress=not quiet
        )
        if unreadable:
            raise UserError(
                f"{len(unreadable)} image(s) of this run's split.csv are gone or unreadable since it started (first: "
                f"{unreadable[0].path}); resuming needs the same data: restore them or start a new run."
            )
        changed = changed_since(run.data_check_file, info)
        if changed:
            raise UserError(
                f"{len(changed)} image(s) of this run changed since it started (first: {changed[0]}); resuming on "
                "other data would not continue the same training: restore them, or start a new run."
            )
        return records

    data = PreparedData(record["data"]["source"], classes, dist.from_main(check_data))
    pre = Preprocessing.from_dict(checkpoint["preprocessing"])
    record["settings"] = cfg.to_dict()
    record.setdefault("resumed", []).append({"from_epoch": checkpoint["epoch"], "time": now(), "command": command(),
                                             "processes": dist.world_size})  # fmt: skip
    if dist.is_main:
        run.write_config(record)
    within = f", step {partial['steps']} of epoch {checkpoint['epoch'] + 1}" if partial else ""
    log(f"resuming {run.path} after epoch {checkpoint['epoch']} of {cfg.train.epochs}{within}; device: "
        f"{runtime.describe()}" + _processes(dist, cfg.train.batch_size))  # fmt: skip

    model = build_model(cfg.model.backbone, len(classes))
    model.load_state_dict(checkpoint["model"])
    return _train(run, cfg, data, model, runtime, pre, dist, start=checkpoint, quiet=quiet, log=log)


def _silent(*_args, **_kwargs) -> None:
    """The log of processes other than rank 0: one process speaks for the run."""


def _processes(dist: Distributed, batch_size: int) -> str:
    if not dist.enabled:
        return ""
    return (
        f"; {dist.world_size} processes ({dist.backend}), global batch {dist.world_size} x {batch_size} = "
        f"{dist.world_size * batch_size}"
    )


def _train(
    run: RunFolder,
    cfg: RunConfig,
    data: PreparedData,
    model: nn.Module,
    runtime: Runtime,
    pre: Preprocessing,
    dist: Distributed,
    *,
    start: dict | None,
    quiet: bool,
    log,
) -> Path:
    tc = cfg.train
    name = cfg.model.backbone
    apply_mode(model, name, tc.mode)
    model.to(runtime.device, memory_format=torch.channels_last if runtime.channels_last else torch.preserve_format)
    cached = tc.mode == "linear" and tc.feature_cache != "off"
    started = time.perf_counter()
    if cached:  # the frozen backbone runs once per image; epochs train the head on the stored features
        loaders = build_feature_loaders(model, data, pre, cfg, runtime, dist, quiet=quiet, log=log)
        network = head_of(model, name)
    else:
        loaders = build_loaders(data, pre, cfg, runtime, dist, progress=not quiet)
        network = model
    setup_seconds = time.perf_counter() - started  # features or --cache filled: counted in the first epoch's time
    evaluated = network  # validation runs the plain module: no gradients to synchronise
    if dist.enabled:  # gradients averaged over the processes at every step; rank 0's weights to start with
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        network = nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
    if tc.compile:
        network = torch.compile(network)
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, steps_per_epoch=len(loaders["train"].batch_sampler))
    scaler = runtime.grad_scaler()
    criterion = nn.CrossEntropyLoss(label_smoothing=tc.label_smoothing)
    batches = run.batches_log() if dist.is_main else None  # rank 0 writes the run folder
    epochs = run.epochs_log() if dist.is_main else None
    progress = {"best": -math.inf, "best_epoch": 0, "stale": 0}
    first_epoch, partial, val = 1, None, {}
    if start is not None:
        optimizer.load_state_dict(start["training"]["optimizer"])
        scheduler.load_state_dict(start["training"]["scheduler"])
        if start["training"]["scaler"]:  # empty when the run began without fp16 (a CPU run resumed on a GPU)
            scaler.load_state_dict(start["training"]["scaler"])
        progress = dict(start["training"]["progress"])
        first_epoch, val = start["epoch"] + 1, start["metrics"]
        partial = start["training"].get("interrupted")  # an epoch that Ctrl-C or SIGTERM stopped part-way
        last_step = start["epoch"] * len(loaders["train"]) + (partial["steps"] if partial else 0)
        if dist.is_main:
            batches.keep_rows(lambda row: int(row["step"]) <= last_step)  # rows a crash logged after the checkpoint
            epochs.keep_rows(lambda row: int(row["epoch"]) <= start["epoch"])

    def checkpoint(epoch: int, metrics: dict[str, float], training: dict | None = None) -> dict:
        return make_checkpoint(
            model, backbone=name, classes=data.classes, preprocessing=pre, config=cfg.to_dict(), epoch=epoch,
            metrics=metrics, training=training,
        )  # fmt: skip

    metric_key = tc.best_metric  # a key of the validation summary: accuracy or f1

    def training_state(**extra) -> dict:
        """What last.pt needs beyond the weights to continue exactly."""
        return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "progress": progress, "world_size": dist.world_size, **extra}  # fmt: skip

    def save(path: Path, content: dict) -> None:
        """Rank 0 saves; a failure there (a full disk) stops every process alike."""
        dist.from_main(lambda: save_checkpoint(path, content))

    trackers = Trackers()
    if dist.is_main and (cfg.wandb or cfg.tensorboard):
        record = run.config()
        trackers = Trackers.start(run, cfg, record)
        run.write_config(record)  # with the W&B run id, so that --resume continues that run
    steps_per_epoch = len(loaders["train"])

    with trackers.closed_on_error():
        with StopRequest() as stop:
            for epoch in range(first_epoch, tc.epochs + 1):
                if partial:  # continue with the dropout generator and the batches where the interruption left them
                    torch.set_rng_state(partial["rng"])
                else:
                    # dropout and other randomness in the model; each process its own stream
                    torch.manual_seed(sample_seed(tc.seed, epoch, 0) + 2 + 7919 * dist.rank)
                loaders["train"].batch_sampler.set_epoch(epoch, skip=partial["steps"] if partial else 0)
                set_train_mode(model, name, tc.mode)  # in linear mode the frozen backbone stays in eval mode
                with memory_hint(runtime, tc.batch_size, epoch):
                    trained = train_one_epoch(
                        network, loaders["train"], optimizer, scheduler, scaler, criterion,
                        runtime=runtime, pre=pre, epoch=epoch, epochs=tc.epochs, batch_log=batches, quiet=quiet,
                        partial=partial, stop=stop, dist=dist, trackers=trackers,
                    )  # fmt: skip
                partial = None
                if trained["interrupted"]:  # last.pt holds the weights and state after the last step trained
                    state = {**trained["partial"], "rng": torch.get_rng_state()}
                    save(run.last, checkpoint(epoch - 1, val, training_state(interrupted=state)))
                    where = f"at epoch {epoch}, step {state['steps']} of {len(loaders['train'])}"
                    raise TrainingInterrupted(
                        stop.signum or signal.SIGTERM, run.path, where
                    )  # another process's signal
                if epoch == first_epoch:
                    trained["seconds"] += setup_seconds
                    if tc.compile:
                        log(f"torch.compile: the first step took {trained['first_step_seconds']:.1f} s (compiling)")
                dist.sync_buffers(evaluated)
                with memory_hint(runtime, tc.batch_size, epoch):
                    val = evaluate(evaluated, loaders["val"], runtime=runtime, pre=pre, dist=dist).summary()
                lr = optimizer.param_groups[0]["lr"]
                row = {
                    "epoch": epoch, "train_loss": trained["loss"], "train_acc": trained["accuracy"],
                    "val_loss": val["loss"], "val_acc": val["accuracy"], "val_precision": val["precision"],
                    "val_recall": val["recall"], "val_f1": val["f1"], "lr": lr, "seconds": trained["seconds"],
                    "images_per_s": trained["images"] / trained["seconds"],
                }  # fmt: skip
                if dist.is_main:
                    epochs.append(row)
                    trackers.log_epoch(row, step=epoch * steps_per_epoch)
                improved = val[metric_key] > progress["best"]
                if improved:
                    progress.update(best=val[metric_key], best_epoch=epoch, stale=0)
                    save(run.best, checkpoint(epoch, val))
                else:
                    progress["stale"] += 1
                save(run.last, checkpoint(epoch, val, training_state()))
                _print_epoch(log, epoch, tc.epochs, trained, val, lr, improved)
                if dist.any(stop.requested) and epoch < tc.epochs:  # the signal came during validation or saving
                    raise TrainingInterrupted(stop.signum or signal.SIGTERM, run.path, f"after epoch {epoch}")
                if tc.patience and progress["stale"] >= tc.patience:
                    best_epoch = progress["best_epoch"]
                    log(f"early stop: no better validation {metric_key} for {tc.patience} epochs (best: epoch "
                        f"{best_epoch})")  # fmt: skip
                    break

        dist.close()
        if not dist.is_main:
            return run.path  # rank 0 alone evaluates best.pt and writes the report
        _final_evaluation(run, cfg, data, progress["best_epoch"], quiet, log)
        trackers.finish(run, best=run.metrics(), step=epoch * steps_per_epoch)
    log(f"run folder: {run.path}")
    return run.path


def _final_evaluation(run: RunFolder, cfg: RunConfig, data: PreparedData, best_epoch: int, quiet: bool, log) -> None:
    """best.pt on the validation (and test) split: evaluation folders, metrics.json, and the report if asked."""
    from foldertune.analysis.evaluation import evaluate_checkpoint

    results = {"best_epoch": best_epoch, "checkpoint": run.best.name}
    log(f"\nbest.pt (epoch {best_epoch}):")
    for split in ("val", "test"):
        if data.count(split) == 0:
            continue
        out = evaluate_checkpoint(run.path, split=split, device=cfg.train.device, figures=cfg.report,
                                  progress=not quiet, log=lambda *_: None)  # fmt: skip
        evaluation = EvalFolder(out).metrics()
        overall = evaluation["overall"]
        results[split] = {
            "accuracy": overall["accuracy"],
            "precision": overall["macro_precision"],
            "recall": overall["macro_recall"],
            "f1": overall["macro_f1"],
            "loss": overall["loss"],
            "images": overall["images"],
            "per_class": evaluation["per_class"],
        }
        log(
            f"  {split:<4} accuracy {overall['accuracy']:.4f}  precision {overall['macro_precision']:.4f}  "
            f"recall {overall['macro_recall']:.4f}  f1 {overall['macro_f1']:.4f}  loss {overall['loss']:.4f}  "
            f"({overall['images']} images)"
        )
    run.write_metrics(results)
    if cfg.report:
        from foldertune.reporting.html_report import write_report
        from foldertune.reporting.plots import plot_run

        plot_run(run.path)  # the training curves and every evaluation's figures
        write_report(run.path, log=lambda *_: None)
        log(f"report: {run.report_file}")


def _print_epoch(log, epoch, epochs, trained, val, lr, improved) -> None:
    log(
        f"epoch {epoch:>{len(str(epochs))}}/{epochs}  train loss {trained['loss']:.4f} acc {trained['accuracy']:.3f}"
        f"  | val loss {val['loss']:.4f} acc {val['accuracy']:.3f} f1 {val['f1']:.3f}"
        f"  | lr {lr:.2e}  {trained['seconds']:.1f}s {trained['images'] / trained['seconds']:.0f} img/s"
        + ("  *best" if improved else "")
    )
