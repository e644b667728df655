"""The training loop's two plain functions, `train_one_epoch` and `validate`, and the out-of-memory hint.

    ctx = LoopContext(runtime, pre, dist, epochs=10, batch_log=run.batches_log())
    opt = Optimization.build(model, cfg.train, runtime, steps_per_epoch=len(loader))
    trained = train_one_epoch(model, loader, opt, ctx, epoch=1)   # EpochResult: loss, accuracy, images, seconds
    val = validate(model, val_loader, ctx).summary()              # loss, accuracy, precision, recall, f1
    with memory_hint(runtime, batch_size=32, epoch=1): ...        # out of GPU memory: which --batch-size to try

The loaders yield uint8 images (with --decode device, JPEG bytes decoded on the device first), normalised here on
the device, or (linear mode with the feature cache) the frozen backbone's features for the head. With a
`Distributed`, losses and totals cover every process. A stop request (Ctrl-C, SIGTERM) ends `train_one_epoch` after
a step, with the `PartialEpoch` that continues it (state.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from foldertune.analysis.intervals import wilson_interval
from foldertune.analysis.metrics import classification_summary
from foldertune.data.dataset import EpochBatchSampler
from foldertune.data.device_decode import PackedImages
from foldertune.data.transforms import model_input
from foldertune.device import Runtime
from foldertune.errors import UserError
from foldertune.notebook import tqdm
from foldertune.preprocessing import Preprocessing
from foldertune.runs.folder import CsvLog
from foldertune.training.distributed import Distributed
from foldertune.training.interrupt import StopRequest
from foldertune.training.loaders import EpochBatches
from foldertune.training.optim import Optimization
from foldertune.training.state import EpochResult, PartialEpoch
from foldertune.training.trackers import Trackers

LOG_EVERY = 10  # steps between reading losses back from the device (each read waits for the device)


@dataclass
class LoopContext:
    """What both passes need besides the network, the loader and the epoch: where and how they compute, and where
    the training pass reports."""

    runtime: Runtime
    pre: Preprocessing  # normalises the uint8 images on the device
    dist: Distributed = field(default_factory=Distributed)
    epochs: int = 1  # of the run: the progress bar says "epoch 3/10"
    batch_log: CsvLog | None = None  # batches.csv (rank 0 alone writes the run folder)
    trackers: Trackers | None = None
    quiet: bool = False  # no progress bar


@dataclass
class Validation:
    """What `validate` saw: every image's target and logits, in the loader's dataset order, and the mean loss."""

    targets: np.ndarray  # (N,) class indices
    logits: np.ndarray  # (N, classes) float32
    loss: float

    def summary(self) -> dict[str, float]:
        """Loss, accuracy with its 95% Wilson interval (accuracy_low, accuracy_high), macro precision / recall / F1."""
        summary = {"loss": self.loss, **classification_summary(self.targets, self.logits)}
        correct = int((self.logits.argmax(axis=1) == self.targets).sum())
        summary["accuracy_low"], summary["accuracy_high"] = wilson_interval(correct, len(self.targets))
        return summary


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader | EpochBatches,
    opt: Optimization,
    ctx: LoopContext,
    *,
    epoch: int,
    partial: PartialEpoch | None = None,
    stop: StopRequest | None = None,
) -> EpochResult:
    """One pass over the training loader (after `partial`, only the rest of it); returns the epoch's totals.

    The caller seeds the epoch, sets the sampler's epoch (an `EpochBatches` has) and the train / eval modes. When
    `stop` is requested the pass ends after the current step, on every process alike, with `interrupted` set to what
    continuing it needs.
    """
    done = partial if partial is not None else PartialEpoch()
    carried = done if ctx.dist.is_main else PartialEpoch()  # rank 0 carries all processes' totals so far
    total_loss = torch.tensor(carried.loss_sum, device=ctx.runtime.device)
    total_correct = torch.tensor(carried.correct, device=ctx.runtime.device, dtype=torch.long)
    seen = carried.seen
    steps_per_epoch = len(loader)
    step = (epoch - 1) * steps_per_epoch + done.steps  # global: the schedule's and batches.csv's count
    started = time.perf_counter() - done.seconds
    bar = tqdm(loader, desc=f"epoch {epoch}/{ctx.epochs}", unit="batch", leave=False, dynamic_ncols=True,
               disable=True if ctx.quiet else None, initial=done.steps, total=steps_per_epoch)  # fmt: skip
    losses = _StepLosses(ctx, epoch, bar, started)
    first_step_seconds, interrupted, lr = 0.0, False, opt.lr
    for inputs, targets in bar:
        inputs, targets = _on_device(inputs, ctx), targets.to(ctx.runtime.device, non_blocking=True)
        with ctx.runtime.autocast():
            logits = model(inputs)
            loss = opt.criterion(logits.float(), targets)
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(loss).backward()
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        lr = opt.lr  # the rate this step used
        opt.scheduler.step()
        if opt.ema is not None:
            opt.ema.update()
        step += 1
        correct = (logits.argmax(dim=1) == targets).sum()
        total_loss += loss.detach() * len(targets)
        total_correct += correct
        seen += len(targets)
        if not first_step_seconds:
            first_step_seconds = time.perf_counter() - started  # includes compiling, with --compile
        flushed = losses.add(step, loss.detach(), correct, len(targets), lr, seen=seen)
        requested = stop is not None and stop.requested
        if ctx.dist.enabled:  # processes must agree, which costs a collective: only where the losses are synced anyway
            requested = flushed and ctx.dist.any(requested)
        if requested and step < epoch * steps_per_epoch:
            interrupted = True
            break
    losses.flush(seen=seen)
    bar.close()
    seconds = time.perf_counter() - started
    loss_sum, correct_sum, seen_sum = ctx.dist.sum([total_loss.item(), total_correct.item(), seen])
    correct_sum, seen_sum = int(correct_sum), int(seen_sum)
    trained = EpochResult(loss_sum / max(seen_sum, 1), correct_sum / max(seen_sum, 1), seen_sum, seconds,
                          first_step_seconds, lr=lr)  # fmt: skip
    if interrupted:
        steps = step - (epoch - 1) * steps_per_epoch
        rng = torch.get_rng_state()
        rngs = ctx.dist.gather(rng) if ctx.dist.enabled else None  # each process's dropout goes on from its own
        trained.interrupted = PartialEpoch(steps, loss_sum, correct_sum, seen_sum, seconds, rng, rngs)
    return trained


class _StepLosses:
    """The steps' losses, kept on the device and read back every LOG_EVERY steps, then written to batches.csv, the
    trackers and the progress bar."""

    def __init__(self, ctx: LoopContext, epoch: int, bar: tqdm, started: float) -> None:
        self.ctx, self.epoch, self.bar, self.started = ctx, epoch, bar, started
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor, int, float]] = []  # step, loss, correct, size, lr

    def add(self, step: int, loss: torch.Tensor, correct: torch.Tensor, size: int, lr: float, *, seen: int) -> bool:
        """Keep one step's numbers; read them all back once LOG_EVERY wait (returns whether it did)."""
        self.pending.append((step, loss, correct, size, lr))
        if len(self.pending) < LOG_EVERY:
            return False
        self.flush(seen=seen)
        return True

    def flush(self, *, seen: int) -> None:
        """Read the pending losses back from the device (one sync), check and log them; `seen`: images so far."""
        if not self.pending:
            return
        pending, dist, epoch = self.pending, self.ctx.dist, self.epoch
        losses = torch.stack([item[1] for item in pending]).float().cpu()
        corrects = torch.stack([item[2] for item in pending]).cpu()
        sizes = [item[3] for item in pending]
        if dist.enabled:  # every process's batches of these steps: mean loss over all their images
            sums = dist.sum([*(losses * torch.tensor(sizes)).tolist(), *corrects.tolist(), *sizes])
            count = len(pending)
            sizes = [int(n) for n in sums[2 * count :]]
            losses = torch.tensor(sums[:count]) / torch.tensor(sizes)
            corrects = torch.tensor(sums[count : 2 * count])
        if not torch.isfinite(losses).all():
            bad = pending[int((~torch.isfinite(losses)).nonzero()[0])][0]
            raise UserError(
                f"the training loss became {losses[~torch.isfinite(losses)][0].item()} at epoch {epoch}, step {bad}; "
                "lower --lr or use --precision fp32 (the last good checkpoint is kept)."
            )
        rows = [
            {"epoch": epoch, "step": s, "loss": float(loss), "accuracy": int(c) / n, "lr": lr}
            for (s, _, _, _, lr), loss, c, n in zip(pending, losses, corrects, sizes, strict=True)
        ]
        if self.ctx.batch_log is not None:
            self.ctx.batch_log.append(*rows)
        if self.ctx.trackers is not None:
            self.ctx.trackers.log_steps(rows)
        elapsed = time.perf_counter() - self.started
        self.bar.set_postfix(
            loss=f"{rows[-1]['loss']:.3f}",
            acc=f"{rows[-1]['accuracy']:.2f}",
            img_s=f"{seen * dist.world_size / elapsed:.0f}",
        )
        pending.clear()


@torch.inference_mode()
def validate(model: nn.Module, loader: DataLoader, ctx: LoopContext) -> Validation:
    """Logits for every image (or feature row, for the head) of the loader, in order, and the mean cross-entropy.

    Always in fp32, whatever the training precision: the epoch's numbers are then those of the final evaluation of
    the checkpoint (bf16 autocast moved the validation loss in the third decimal).

    With several processes, each validates its share and every process gets the whole set back, once per image.
    """
    model.eval()
    all_logits, all_targets = [], []
    for inputs, targets in loader:
        inputs = _on_device(inputs, ctx)  # in fp32, without autocast: as `foldertune evaluate` computes the metrics
        all_logits.append(model(inputs).float())
        all_targets.append(targets)
    logits = torch.cat(all_logits).cpu()
    targets = torch.cat(all_targets)
    if ctx.dist.enabled:
        logits, targets = _gather_in_order(ctx.dist, loader.batch_sampler, logits, targets)
    loss = F.cross_entropy(logits, targets).item()
    return Validation(targets.numpy(), logits.numpy(), loss)


def _on_device(inputs: torch.Tensor, ctx: LoopContext) -> torch.Tensor:
    """The network's input: uint8 images normalised on the device, or the backbone's features as they are."""
    if isinstance(inputs, PackedImages):  # --decode device: JPEG bytes, decoded and cropped on the device first
        inputs = inputs.decode(ctx.pre, ctx.runtime.device)
    if inputs.dtype == torch.uint8:
        return model_input(inputs, ctx.pre, device=ctx.runtime.device, channels_last=ctx.runtime.channels_last)
    return inputs.to(ctx.runtime.device, non_blocking=True)


def _gather_in_order(
    dist: Distributed, sampler: EpochBatchSampler, logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every process's rows put back in dataset order; the few images two processes both validated count once."""
    full_logits = logits.new_empty((sampler.size, logits.shape[1]))
    full_targets = targets.new_empty(sampler.size)
    for order, part_logits, part_targets in dist.gather((sampler.indices(), logits, targets)):
        full_logits[order] = part_logits
        full_targets[order] = part_targets
    return full_logits, full_targets


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
