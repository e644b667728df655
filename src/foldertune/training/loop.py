"""The training loop's two plain functions: `train_one_epoch` and `evaluate` (plus the out-of-memory hint).

    trained = train_one_epoch(network, loader, optimizer, scheduler, scaler, criterion, runtime=runtime, pre=pre,
                              epoch=1, epochs=10)   # {'loss': ..., 'accuracy': ..., 'images': ..., 'seconds': ...}
    val = evaluate(network, val_loader, runtime=runtime, pre=pre).summary()   # loss, accuracy, precision, ...

The loaders yield uint8 images, normalised here on the device, or (linear mode with the feature cache) the frozen
backbone's features for the head. With a `Distributed`, losses and totals cover every process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from foldertune.analysis.metrics import classification_summary
from foldertune.data.dataset import EpochBatchSampler
from foldertune.data.transforms import model_input
from foldertune.device import Runtime
from foldertune.errors import UserError
from foldertune.preprocessing import Preprocessing
from foldertune.runs.folder import CsvLog
from foldertune.training.distributed import Distributed
from foldertune.training.interrupt import StopRequest
from foldertune.training.trackers import Trackers

LOG_EVERY = 10  # steps between reading losses back from the device (each read waits for the device)


@dataclass
class Evaluation:
    targets: np.ndarray  # (N,) class indices
    logits: np.ndarray  # (N, classes) float32
    loss: float

    def summary(self) -> dict[str, float]:
        return {"loss": self.loss, **classification_summary(self.targets, self.logits)}


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
    dist: Distributed | None = None,
    trackers: Trackers | None = None,
) -> dict[str, float]:
    """One pass over the training loader; returns mean loss, accuracy, images seen and seconds.

    The caller sets the train / eval modes. The loader yields uint8 images (normalised here, on the device) or,
    in linear mode with the feature cache, the backbone's features, for `model` = the head. `partial` continues an
    epoch that an interruption cut short (its sampler skips the batches already trained); when `stop` is requested
    the pass ends after the current step, with "interrupted" set and the totals needed to continue it. With `dist`,
    the losses logged and the totals returned cover every process, and a stop request on any process ends the
    same step on all of them.
    """
    device = runtime.device
    dist = dist or Distributed()
    partial = partial or {"steps": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    carried = partial if dist.is_main else {"loss_sum": 0.0, "correct": 0, "seen": 0}  # all processes' totals so far
    total_loss = torch.tensor(carried["loss_sum"], device=device)
    total_correct = torch.tensor(carried["correct"], device=device, dtype=torch.long)
    seen = carried["seen"]
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
        if batch_log is not None:
            batch_log.append(*rows)
        if trackers is not None:
            trackers.log_steps(rows)
        elapsed = time.perf_counter() - started
        bar.set_postfix(
            loss=f"{rows[-1]['loss']:.3f}",
            acc=f"{rows[-1]['accuracy']:.2f}",
            img_s=f"{seen * dist.world_size / elapsed:.0f}",
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
        flushing = len(pending) >= LOG_EVERY
        if flushing:
            flush()
        requested = stop is not None and stop.requested
        if dist.enabled:  # processes must agree, which costs a collective: only where the losses are synced anyway
            requested = flushing and dist.any(requested)
        if requested and step < epoch * steps_per_epoch:
            interrupted = True
            break
    flush()
    bar.close()
    seconds = time.perf_counter() - started
    loss_sum, correct_sum, seen_sum = dist.sum([total_loss.item(), total_correct.item(), seen])
    correct_sum, seen_sum = int(correct_sum), int(seen_sum)
    done = {"steps": step - (epoch - 1) * steps_per_epoch, "loss_sum": loss_sum, "correct": correct_sum,
            "seen": seen_sum, "seconds": seconds}  # fmt: skip
    return {
        "loss": loss_sum / max(seen_sum, 1),
        "accuracy": correct_sum / max(seen_sum, 1),
        "images": seen_sum,
        "seconds": seconds,
        "first_step_seconds": first_step_seconds,
        "interrupted": interrupted,
        "partial": done,  # what resuming this epoch part-way needs
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DataLoader, *, runtime: Runtime, pre: Preprocessing, dist: Distributed | None = None
) -> Evaluation:
    """Logits for every image (or feature row, for the head) of the loader, in order, and the mean cross-entropy.

    With `dist`, each process evaluates its share and every process gets the whole set back, once per image.
    """
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
    if dist is not None and dist.enabled:
        logits, targets = _gather_in_order(dist, loader.batch_sampler, logits, targets)
    loss = F.cross_entropy(logits, targets).item()
    return Evaluation(targets.numpy(), logits.numpy(), loss)


def _gather_in_order(
    dist: Distributed, sampler: EpochBatchSampler, logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every process's rows put back in dataset order; the few images two processes both evaluated count once."""
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
