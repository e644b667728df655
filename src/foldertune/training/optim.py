"""Optimizer and learning-rate schedule of a run.

optimizer = build_optimizer(model, cfg.train)        # AdamW (or Adam, SGD) over the trainable parameters
scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch=100)   # stepped once per batch
"""

from __future__ import annotations

import math

import torch
from torch import nn

from foldertune.config import TrainConfig


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
