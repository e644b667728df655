"""Optimizer, learning-rate schedule and loss of a run, and `Optimization`, which carries them together.

optimizer = build_optimizer(model, cfg.train)        # AdamW (or Adam, SGD) over the trainable parameters
scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch=100)   # stepped once per batch
opt = Optimization.build(model, cfg.train, runtime, steps_per_epoch=100)  # both, the fp16 scaler and the loss
opt.load_state_dict(last["training"])                # --resume: last.pt's optimizer, scheduler and scaler; the
                                                     # schedule follows the run's (possibly extended) --epochs
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from foldertune.config import TrainConfig
from foldertune.device import Runtime


@dataclass
class Optimization:
    """What a training step uses besides the network: loss, optimizer, its per-step schedule, fp16 loss scaler."""

    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler  # a no-op unless the precision is fp16

    @classmethod
    def build(
        cls,
        model: nn.Module,
        tc: TrainConfig,
        runtime: Runtime,
        *,
        steps_per_epoch: int,
        class_weights: list[float] | None = None,
    ) -> Optimization:
        """As the run's settings say, over `model`'s trainable parameters; `class_weights` (per class) scale the loss
        with --balance weights."""
        optimizer = build_optimizer(model, tc)
        weight = None
        if tc.balance == "weights" and class_weights is not None:
            weight = torch.tensor(class_weights, dtype=torch.float32, device=runtime.device)
        return cls(
            criterion=nn.CrossEntropyLoss(weight=weight, label_smoothing=tc.label_smoothing),
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, tc, steps_per_epoch=steps_per_epoch),
            scaler=runtime.grad_scaler(),
        )

    @property
    def lr(self) -> float:
        """The learning rate of the next step (every parameter group has the same)."""
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        """last.pt's optimizer, scheduler and scaler entries."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`'s entries (extra keys are ignored: last.pt's whole training dict will do)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # The next step's rate from this run's plan, which --epochs may have lengthened: the saved rate is the old
        # plan's (0 at the end of a finished cosine). Unchanged plan: the very value the scheduler stored.
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                       self.scheduler.lr_lambdas, strict=True):  # fmt: skip
            group["lr"] = base * factor(self.scheduler.last_epoch)
        if state["scaler"]:  # empty when the run began without fp16 (a CPU run resumed on a GPU)
            self.scaler.load_state_dict(state["scaler"])


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
