"""Training: `fit` a new run or `resume` one; `train_one_epoch` and `evaluate` are the loop, top to bottom.

    run = fit(RunConfig.from_flat(data="photos/", mode="linear", epochs=5))   # -> Path of the run folder
    run = resume("runs/mobilenet_v2-linear")                                   # continues from last.pt

Every epoch: train, validate (loss, accuracy, macro precision / recall / F1), append to epochs.csv, keep best.pt
(by --best-metric) and last.pt (with optimizer, schedule and scaler state). At the end best.pt is evaluated on the
validation and test splits, printed and saved as metrics.json. Epoch e's batch order, augmentation and dropout
are seeded from (seed, e), so a resumed run repeats exactly what the uninterrupted one would have done on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from foldertune.cache import cache_root
from foldertune.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint, versions
from foldertune.config import RunConfig, TrainConfig
from foldertune.data.check import CHECK_COLUMNS, changed_since
from foldertune.data.dataset import EpochBatchSampler, ImageDataset, sample_seed
from foldertune.data.image_cache import ImageCache
from foldertune.data.images import open_image
from foldertune.data.prepare import PreparedData, prepare_data
from foldertune.data.readers import EvalReader, TrainReader
from foldertune.data.scan import verify_records
from foldertune.data.split import read_manifest, split_counts, write_manifest
from foldertune.data.transforms import model_input
from foldertune.device import Runtime, choose_runtime, cpu_name
from foldertune.errors import UserError
from foldertune.features import FeatureBatches, extract_features, feature_store
from foldertune.interrupt import StopRequest, TrainingInterrupted
from foldertune.metrics import classification_summary
from foldertune.models.build import apply_mode, build_model, head_of, set_train_mode
from foldertune.models.registry import get_backbone
from foldertune.models.weights import resolve_weights
from foldertune.preprocessing import Preprocessing
from foldertune.runfolder import BATCH_COLUMNS, EPOCH_COLUMNS, REPORT_COLUMNS, CsvLog, RunFolder, check_new_run
from foldertune.tables import write_table

LOG_EVERY = 10  # steps between reading losses back from the device (each read waits for the device)


@dataclass
class Evaluation:
    targets: np.ndarray  # (N,) class indices
    logits: np.ndarray  # (N, classes) float32
    loss: float

    def summary(self) -> dict[str, float]:
        return {"loss": self.loss, **classification_summary(self.targets, self.logits)}


def fit(cfg: RunConfig, *, data: PreparedData | None = None, quiet: bool = False, log=print) -> Path:
    """Train a new run as `cfg` says (on `data`, when the caller has prepared it already); returns its run folder."""
    check_new_run(cfg)
    if data is None:
        data = prepare_data(cfg.data, seed=cfg.train.seed, progress=not quiet)
    runtime = choose_runtime(cfg.train.device, cfg.train.precision)
    log(data.summary())
    state_dict, weights_origin = None, "none (random initialisation)"
    if cfg.model.pretrained or cfg.model.weights:
        state_dict, weights_origin = resolve_weights(
            get_backbone(cfg.model.backbone), weights_file=cfg.model.weights, log=log
        )
    pre = get_backbone(cfg.model.backbone).preprocessing.with_crop_size(cfg.data.img_size)

    run = RunFolder.create(cfg.project, cfg.run_name, default_name=f"{cfg.model.backbone}-{cfg.train.mode}")
    run.write_json("classes.json", dict(enumerate(data.classes)))
    write_manifest(run / "split.csv", data.records)
    report = run.csv_log("data_report.csv", REPORT_COLUMNS)
    report.append(*data.report_rows())
    if data.check is not None:
        write_table(run / "data_check.csv", CHECK_COLUMNS, data.check.rows())
    run.write_json("config.json", _config_record(cfg, runtime, pre, data, weights_origin))
    log(f"run folder: {run.path}")
    log(f"device: {runtime.describe()}; weights: {weights_origin}")

    torch.manual_seed(cfg.train.seed)  # the new head's initialisation (and the whole network's in scratch mode)
    model = build_model(cfg.model.backbone, len(data.classes), state_dict=state_dict)
    return _train(run, cfg, data, model, runtime, pre, start=None, quiet=quiet, log=log)


def resume(
    run_path: str | os.PathLike,
    *,
    epochs: int | None = None,
    device: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    log=print,
) -> Path:
    """Continue a run from its last.pt: same split, weights, optimizer and schedule state; more epochs if given."""
    run = RunFolder(Path(run_path).expanduser())
    if not (run / "config.json").is_file():
        raise UserError(f"--resume '{run.path}' is not a foldertune run folder (it has no config.json).")
    if not (run / "last.pt").is_file():
        raise UserError(f"run '{run.path}' has no last.pt: it stopped before finishing an epoch; start a new run.")
    record = run.read_json("config.json")
    cfg = RunConfig.from_dict(record["settings"])
    checkpoint = load_checkpoint(run / "last.pt")
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
            f"--weights {run.path / 'best.pt'}."
        )
    classes = [name for _, name in sorted(run.read_json("classes.json").items(), key=lambda item: int(item[0]))]
    if classes != checkpoint["classes"]:
        raise UserError(f"classes.json and last.pt of '{run.path}' disagree on the classes; the run folder was edited.")
    listed = read_manifest(run / "split.csv")
    records, unreadable, info = verify_records(listed, max_pixels=cfg.data.max_pixels, workers=None, progress=not quiet)
    if unreadable:
        raise UserError(
            f"{len(unreadable)} image(s) of this run's split.csv are gone or unreadable since it started (first: "
            f"{unreadable[0].path}); resuming needs the same data: restore them or start a new run."
        )
    changed = changed_since(run / "data_check.csv", info)
    if changed:
        raise UserError(
            f"{len(changed)} image(s) of this run changed since it started (first: {changed[0]}); resuming on other "
            "data would not continue the same training: restore them, or start a new run."
        )
    data = PreparedData(record["data"]["source"], classes, records)
    runtime = choose_runtime(cfg.train.device, cfg.train.precision)
    pre = Preprocessing.from_dict(checkpoint["preprocessing"])
    record["settings"] = cfg.to_dict()
    record.setdefault("resumed", []).append({"from_epoch": checkpoint["epoch"], "time": _now(), "command": _command()})
    run.write_json("config.json", record)
    partial = checkpoint["training"].get("interrupted")
    within = f", step {partial['steps']} of epoch {checkpoint['epoch'] + 1}" if partial else ""
    log(f"resuming {run.path} after epoch {checkpoint['epoch']} of {cfg.train.epochs}{within}; device: "
        f"{runtime.describe()}")  # fmt: skip

    model = build_model(cfg.model.backbone, len(classes))
    model.load_state_dict(checkpoint["model"])
    return _train(run, cfg, data, model, runtime, pre, start=checkpoint, quiet=quiet, log=log)


def _train(
    run: RunFolder,
    cfg: RunConfig,
    data: PreparedData,
    model: nn.Module,
    runtime: Runtime,
    pre: Preprocessing,
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
        loaders = build_feature_loaders(model, data, pre, cfg, runtime, quiet=quiet, log=log)
        network = head_of(model, name)
    else:
        loaders = build_loaders(data, pre, cfg, runtime, progress=not quiet)
        network = model
    setup_seconds = time.perf_counter() - started  # features or --cache filled: counted in the first epoch's time
    if tc.compile:
        network = torch.compile(network)
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, steps_per_epoch=len(loaders["train"].batch_sampler))
    scaler = runtime.grad_scaler()
    criterion = nn.CrossEntropyLoss(label_smoothing=tc.label_smoothing)
    batches = run.csv_log("batches.csv", BATCH_COLUMNS)
    epochs = run.csv_log("epochs.csv", EPOCH_COLUMNS)
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
        return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "progress": progress, **extra}  # fmt: skip

    with StopRequest() as stop:
        for epoch in range(first_epoch, tc.epochs + 1):
            if partial:  # continue with the dropout generator and the batches where the interruption left them
                torch.set_rng_state(partial["rng"])
            else:
                torch.manual_seed(sample_seed(tc.seed, epoch, 0) + 2)  # dropout and other randomness in the model
            loaders["train"].batch_sampler.set_epoch(epoch, skip=partial["steps"] if partial else 0)
            set_train_mode(model, name, tc.mode)  # in linear mode the frozen backbone stays in eval mode
            with memory_hint(runtime, tc.batch_size, epoch):
                trained = train_one_epoch(
                    network, loaders["train"], optimizer, scheduler, scaler, criterion,
                    runtime=runtime, pre=pre, epoch=epoch, epochs=tc.epochs, batch_log=batches, quiet=quiet,
                    partial=partial, stop=stop,
                )  # fmt: skip
            partial = None
            if trained["interrupted"]:  # last.pt holds the weights and state after the last step trained
                state = {**trained["partial"], "rng": torch.get_rng_state()}
                save_checkpoint(run / "last.pt", checkpoint(epoch - 1, val, training_state(interrupted=state)))
                where = f"at epoch {epoch}, step {state['steps']} of {len(loaders['train'])}"
                raise TrainingInterrupted(stop.signum, run.path, where)
            if epoch == first_epoch:
                trained["seconds"] += setup_seconds
                if tc.compile:
                    log(f"torch.compile: the first step took {trained['first_step_seconds']:.1f} s (compiling)")
            with memory_hint(runtime, tc.batch_size, epoch):
                val = evaluate(network, loaders["val"], runtime=runtime, pre=pre).summary()
            lr = optimizer.param_groups[0]["lr"]
            epochs.append(
                {
                    "epoch": epoch, "train_loss": trained["loss"], "train_acc": trained["accuracy"],
                    "val_loss": val["loss"], "val_acc": val["accuracy"], "val_precision": val["precision"],
                    "val_recall": val["recall"], "val_f1": val["f1"], "lr": lr, "seconds": trained["seconds"],
                    "images_per_s": trained["images"] / trained["seconds"],
                }
            )  # fmt: skip
            improved = val[metric_key] > progress["best"]
            if improved:
                progress.update(best=val[metric_key], best_epoch=epoch, stale=0)
                save_checkpoint(run / "best.pt", checkpoint(epoch, val))
            else:
                progress["stale"] += 1
            save_checkpoint(run / "last.pt", checkpoint(epoch, val, training_state()))
            _print_epoch(log, epoch, tc.epochs, trained, val, lr, improved)
            if stop.requested and epoch < tc.epochs:  # the signal came during validation or saving
                raise TrainingInterrupted(stop.signum, run.path, f"after epoch {epoch}")
            if tc.patience and progress["stale"] >= tc.patience:
                best_epoch = progress["best_epoch"]
                log(f"early stop: no better validation {metric_key} for {tc.patience} epochs (best: epoch "
                    f"{best_epoch})")  # fmt: skip
                break

    return _final_evaluation(run, cfg, data, progress["best_epoch"], quiet, log)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    criterion: nn.Module,
    *,
    runtime: Runtime,
    pre: Preprocessing,
    epoch: int,
    epochs: int,
    batch_log: CsvLog | None = None,
    quiet: bool = False,
    partial: dict | None = None,
    stop: StopRequest | None = None,
) -> dict[str, float]:
    """One pass over the training loader; returns mean loss, accuracy, images seen and seconds.

    The caller sets the train / eval modes. The loader yields uint8 images (normalised here, on the device) or,
    in linear mode with the feature cache, the backbone's features, for `model` = the head. `partial` continues an
    epoch that an interruption cut short (its sampler skips the batches already trained); when `stop` is requested
    the pass ends after the current step, with "interrupted" set and the totals needed to continue it.
    """
    device = runtime.device
    partial = partial or {"steps": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    total_loss = torch.tensor(partial["loss_sum"], device=device)
    total_correct = torch.tensor(partial["correct"], device=device, dtype=torch.long)
    seen = partial["seen"]
    pending: list[tuple[int, torch.Tensor, torch.Tensor, int, float]] = []  # step, loss, correct, size, lr
    steps_per_epoch = len(loader)
    step = (epoch - 1) * steps_per_epoch + partial["steps"]
    interrupted = False
    started = time.perf_counter() - partial["seconds"]
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}/{epochs}",
        unit="batch",
        leave=False,
        disable=True if quiet else None,
        dynamic_ncols=True,
        initial=partial["steps"],
        total=steps_per_epoch,
    )

    def flush() -> None:
        """Read the pending losses back from the device (one sync), log them and update the bar."""
        if not pending:
            return
        losses = torch.stack([item[1] for item in pending]).float().cpu()
        corrects = torch.stack([item[2] for item in pending]).cpu()
        if not torch.isfinite(losses).all():
            bad = pending[int((~torch.isfinite(losses)).nonzero()[0])][0]
            raise UserError(
                f"the training loss became {losses[~torch.isfinite(losses)][0].item()} at epoch {epoch}, step {bad}; "
                "lower --lr or use --precision fp32 (the last good checkpoint is kept)."
            )
        rows = [
            {"epoch": epoch, "step": s, "loss": float(loss), "accuracy": int(c) / n, "lr": lr}
            for (s, _, _, n, lr), loss, c in zip(pending, losses, corrects, strict=True)
        ]
        if batch_log is not None:
            batch_log.append(*rows)
        elapsed = time.perf_counter() - started
        bar.set_postfix(
            loss=f"{rows[-1]['loss']:.3f}", acc=f"{rows[-1]['accuracy']:.2f}", img_s=f"{seen / elapsed:.0f}"
        )
        pending.clear()

    first_step_seconds = 0.0
    for inputs, targets in bar:
        if inputs.dtype == torch.uint8:  # images
            inputs = model_input(inputs, pre, device=device, channels_last=runtime.channels_last)
        else:  # features
            inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with runtime.autocast():
            logits = model(inputs)
            loss = criterion(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        lr = optimizer.param_groups[0]["lr"]  # the rate this step used
        scheduler.step()
        step += 1
        correct = (logits.argmax(dim=1) == targets).sum()
        total_loss += loss.detach() * len(targets)
        total_correct += correct
        seen += len(targets)
        pending.append((step, loss.detach(), correct, len(targets), lr))
        if not first_step_seconds:
            first_step_seconds = time.perf_counter() - started  # includes compiling, with --compile
        if len(pending) >= LOG_EVERY:
            flush()
        if stop is not None and stop.requested and step < epoch * steps_per_epoch:
            interrupted = True
            break
    flush()
    bar.close()
    seconds = time.perf_counter() - started
    done = {"steps": step - (epoch - 1) * steps_per_epoch, "loss_sum": total_loss.item(),
            "correct": int(total_correct.item()), "seen": seen, "seconds": seconds}  # fmt: skip
    return {
        "loss": total_loss.item() / max(seen, 1),
        "accuracy": total_correct.item() / max(seen, 1),
        "images": seen,
        "seconds": seconds,
        "first_step_seconds": first_step_seconds,
        "interrupted": interrupted,
        "partial": done,  # what resuming this epoch part-way needs
    }


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, *, runtime: Runtime, pre: Preprocessing) -> Evaluation:
    """Logits for every image (or feature row, for the head) of the loader, in order, and the mean cross-entropy."""
    model.eval()
    all_logits, all_targets = [], []
    for inputs, targets in loader:
        if inputs.dtype == torch.uint8:
            inputs = model_input(inputs, pre, device=runtime.device, channels_last=runtime.channels_last)
        else:
            inputs = inputs.to(runtime.device, non_blocking=True)
        with runtime.autocast():
            all_logits.append(model(inputs).float())
        all_targets.append(targets)
    logits = torch.cat(all_logits).cpu()
    targets = torch.cat(all_targets)
    loss = F.cross_entropy(logits, targets).item()
    return Evaluation(targets.numpy(), logits.numpy(), loss)


@contextlib.contextmanager
def memory_hint(runtime: Runtime, batch_size: int, epoch: int) -> Iterator[None]:
    """Out of GPU memory: say which --batch-size to try instead of a CUDA traceback (last.pt stays as it was)."""
    try:
        yield
    except torch.OutOfMemoryError:
        smaller = max(1, batch_size // 2)
        raise UserError(
            f"out of {runtime.device.type} memory in epoch {epoch} with --batch-size {batch_size}; try --batch-size "
            f"{smaller} (or a smaller --img-size); the last finished epoch is kept in last.pt (--resume cannot change "
            "the batch size, so start a new run, with --weights RUN/last.pt to keep what was learned)."
        ) from None


def build_loaders(
    data: PreparedData, pre: Preprocessing, cfg: RunConfig, runtime: Runtime, *, progress: bool = False
) -> dict[str, DataLoader]:
    """A shuffled, augmented train loader and an in-order val loader with twice the batch size.

    With --cache, every image is decoded once here, before the loader workers start (see data/image_cache.py).
    """
    workers = default_workers() if cfg.data.workers is None else cfg.data.workers
    loaders = {}
    for split in ("train", "val"):
        samples = data.samples(split)
        if not samples:
            continue
        train = split == "train"
        opener = open_image
        if cfg.data.cache != "off":
            side = 2 * pre.crop_size if train else pre.resize_size  # what each reader needs (see image_cache.py)
            cache = ImageCache(cfg.data.cache, side=side, root=cache_root(cfg.data.cache_dir),
                               max_pixels=cfg.data.max_pixels)  # fmt: skip
            cache.fill([path for path, _ in samples], progress=progress, desc=f"caching {split} images")
            opener = cache.open
        reader = (TrainReader if train else EvalReader)(pre, max_pixels=cfg.data.max_pixels, opener=opener)
        dataset = ImageDataset(samples, reader, seed=cfg.train.seed, augment=train)
        batch_size = cfg.train.batch_size if train else 2 * cfg.train.batch_size  # no gradients: twice fits
        sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=train, seed=cfg.train.seed)
        loaders[split] = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=runtime.device.type == "cuda",
            generator=torch.Generator(),  # its worker seeds are unused; drawing them must not move the global RNG
        )
    return loaders


def build_feature_loaders(
    model: nn.Module, data: PreparedData, pre: Preprocessing, cfg: RunConfig, runtime: Runtime, *, quiet: bool, log
) -> dict[str, FeatureBatches]:
    """Linear mode: the frozen backbone's features of every train and val image, computed once (or read from the
    cache folder), served in batches like the image loaders."""
    tc = cfg.train
    root = cache_root(cfg.data.cache_dir) if tc.feature_cache == "disk" else None
    store = feature_store(model, cfg.model.backbone, pre, precision=runtime.precision, root=root)
    workers = default_workers() if cfg.data.workers is None else cfg.data.workers
    loaders, computed, total = {}, 0, 0
    for split in ("train", "val"):
        samples = data.samples(split)
        if not samples:
            continue
        train = split == "train"
        features, new = extract_features(
            model, cfg.model.backbone, [path for path, _ in samples], pre, runtime, store=store,
            views=tc.feature_views if train else 1, batch_size=2 * tc.batch_size, workers=workers,
            max_pixels=cfg.data.max_pixels, progress=not quiet, desc=f"features ({split})",
        )  # fmt: skip
        computed, total = computed + new, total + features.shape[0] * features.shape[1]
        sampler = EpochBatchSampler(len(samples), tc.batch_size if train else 2 * tc.batch_size, shuffle=train,
                                    seed=tc.seed)  # fmt: skip
        loaders[split] = FeatureBatches(features, [label for _, label in samples], sampler, seed=tc.seed)
    where = f"cache {store.folder}" if store else "kept in memory"
    log(f"features: {total} image view(s), {computed} computed by the frozen backbone, {total - computed} from the "
        f"cache ({where})")  # fmt: skip
    return loaders


def default_workers() -> int:
    """Loader processes: the cores beyond the one that runs the model, at least one, at most eight."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def build_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over trainable parameters; biases and norm weights get no weight decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=tc.lr)
    if tc.optimizer == "adam":
        return torch.optim.Adam(groups, lr=tc.lr)
    return torch.optim.SGD(groups, lr=tc.lr, momentum=0.9)


def build_scheduler(
    optimizer: torch.optim.Optimizer, tc: TrainConfig, *, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: cosine with linear warm-up, the tutorial's step decay, or constant."""
    total = max(1, tc.epochs * steps_per_epoch)
    warmup = min(round(tc.warmup_epochs * steps_per_epoch), total - 1) if tc.scheduler == "cosine" else 0

    def factor(step: int) -> float:
        if tc.scheduler == "constant":
            return 1.0
        if tc.scheduler == "step":
            return 0.1 ** (step // (7 * steps_per_epoch))
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _final_evaluation(run: RunFolder, cfg: RunConfig, data: PreparedData, best_epoch: int, quiet: bool, log) -> Path:
    """best.pt on the validation (and test) split: evaluation folders, metrics.json, and the report if asked."""
    from foldertune.evaluation import evaluate as evaluate_checkpoint

    results = {"best_epoch": best_epoch, "checkpoint": "best.pt"}
    log(f"\nbest.pt (epoch {best_epoch}):")
    for split in ("val", "test"):
        if data.count(split) == 0:
            continue
        out = evaluate_checkpoint(run.path, split=split, device=cfg.train.device, figures=cfg.report,
                                  progress=not quiet, log=lambda *_: None)  # fmt: skip
        evaluation = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
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
    run.write_json("metrics.json", results)
    if cfg.report:
        from foldertune.html_report import write_report
        from foldertune.plots.curves import plot_loss, plot_metrics
        from foldertune.plots.gallery import plot_train_batch

        plot_loss(run.path)
        plot_metrics(run.path)
        plot_train_batch(run.path)
        write_report(run.path, log=lambda *_: None)
        log(f"report: {run / 'report.html'}")
    log(f"run folder: {run.path}")
    return run.path


def _print_epoch(log, epoch, epochs, trained, val, lr, improved) -> None:
    log(
        f"epoch {epoch:>{len(str(epochs))}}/{epochs}  train loss {trained['loss']:.4f} acc {trained['accuracy']:.3f}"
        f"  | val loss {val['loss']:.4f} acc {val['accuracy']:.3f} f1 {val['f1']:.3f}"
        f"  | lr {lr:.2e}  {trained['seconds']:.1f}s {trained['images'] / trained['seconds']:.0f} img/s"
        + ("  *best" if improved else "")
    )


def _config_record(cfg: RunConfig, runtime: Runtime, pre: Preprocessing, data: PreparedData, weights: str) -> dict:
    """config.json: the settings, what they resolved to, the data, versions and the machine."""
    workers = default_workers() if cfg.data.workers is None else cfg.data.workers
    return {
        "settings": cfg.to_dict(),
        "resolved": {
            "device": str(runtime.device),
            "precision": runtime.precision,
            "channels_last": runtime.channels_last,
            "workers": workers,
            "preprocessing": pre.to_dict(),
            "weights": weights,
        },
        "data": {
            "source": data.source,
            "classes": data.classes,
            "counts": split_counts(data.records),
            "skipped": len(data.skipped),
        },
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "started": _now(),
        "command": _command(),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
