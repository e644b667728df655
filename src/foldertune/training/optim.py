"""Optimizer, learning-rate schedule and loss of a run, and `Optimization`, which carries them together.

optimizer = build_optimizer(model, cfg.train)        # AdamW (or Adam, SGD) over the trainable parameters
scheduler = build_scheduler(optimizer, cfg.train, steps_per_epoch=100)   # stepped once per batch
opt = Optimization.build(model, cfg.train, runtime, steps_per_epoch=100)  # both, the fp16 scaler and the loss
opt.load_state_dict(last["training"])                # --resume: last.pt's optimizer, scheduler and scaler; the
                                                     # schedule follows the run's (possibly extended) --epochs
layer_depths(model, head="fc")                       # --layer-decay: {parameter name: blocks between it and the head}

With --ema, `opt.ema` (training/ema.py) averages the weights after every step; its state goes to last.pt with the
optimizer's. With --layer-decay, each (depth, decay or not) pair is a parameter group of its own rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from foldertune.config import TrainConfig
from foldertune.device import Runtime
from foldertune.training.ema import WeightAverage


@dataclass
class Optimization:
    """What a training step uses besides the network: loss, optimizer, its per-step schedule, fp16 loss scaler."""

    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler  # a no-op unless the precision is fp16
    ema: WeightAverage | None = None  # --ema: the running average of the weights, updated after every step

    @classmethod
    def build(
        cls,
        model: nn.Module,
        tc: TrainConfig,
        runtime: Runtime,
        *,
        steps_per_epoch: int,
        class_weights: list[float] | None = None,
        head: str | None = None,
    ) -> Optimization:
        """As the run's settings say, over `model`'s trainable parameters; `class_weights` (per class) scale the loss
        with --balance weights; `head`: the classifier's module name, where --layer-decay counts from."""
        optimizer = build_optimizer(model, tc, head=head)
        weight = None
        if tc.balance == "weights" and class_weights is not None:
            weight = torch.tensor(class_weights, dtype=torch.float32, device=runtime.device)
        return cls(
            criterion=nn.CrossEntropyLoss(weight=weight, label_smoothing=tc.label_smoothing),
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, tc, steps_per_epoch=steps_per_epoch),
            scaler=runtime.grad_scaler(),
            ema=WeightAverage(model, tc.ema) if tc.ema else None,
        )

    @property
    def lr(self) -> float:
        """The learning rate of the next step: the head's (with --layer-decay the other groups' are lower)."""
        return max(group["lr"] for group in self.optimizer.param_groups)

    def state_dict(self) -> dict[str, Any]:
        """last.pt's optimizer, scheduler and scaler entries (and the weights' average, with --ema)."""
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict()}  # fmt: skip
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

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
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def build_optimizer(model: nn.Module, tc: TrainConfig, *, head: str | None = None) -> torch.optim.Optimizer:
    """The configured optimizer over trainable parameters; biases and norm weights get no weight decay. With
    --layer-decay F (and `head`, the classifier's module name) a parameter d blocks before the head trains at
    lr x F^d."""
    depths = layer_depths(model, head=head) if tc.layer_decay is not None and head is not None else {}
    params: dict[tuple[int, bool], list[nn.Parameter]] = {}  # (depth, exempt from weight decay) -> parameters
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            params.setdefault((depths.get(name, 0), parameter.ndim <= 1), []).append(parameter)
    keys = sorted({*params, (0, False), (0, True)})  # without --layer-decay: [decayed, not decayed], as last.pt holds
    groups = [{"params": params.get((depth, exempt), []), "weight_decay": 0.0 if exempt else tc.weight_decay,
               "lr": tc.lr * (tc.layer_decay or 1.0) ** depth} for depth, exempt in keys]  # fmt: skip
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=tc.lr)
    if tc.optimizer == "adam":
        return torch.optim.Adam(groups, lr=tc.lr)
    return torch.optim.SGD(groups, lr=tc.lr, momentum=0.9)


def layer_depths(model: nn.Module, *, head: str) -> dict[str, int]:
    """Each parameter's depth counted from the head: 0 for the head, 1 for the block just before it, and so on.

    Blocks are found by name, in the order the network registers its parameters (input first, for torchvision's
    and timm's models alike): a parameter belongs to the first two parts of its module's name (features.3 of
    mobilenet_v2, layer1.0 of a ResNet, blocks.5 of a ViT, stages.2 of a ConvNeXt), or to its top-level module when
    that holds it directly (resnet's conv1 and bn1, a ViT's cls_token)."""
    prefix = head + "."
    block_of: dict[str, str] = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if not name.startswith(prefix):
            block_of[name] = ".".join(parts[:2]) if len(parts) > 2 else parts[0]  # features.3.conv.0.weight: features.3
    blocks = list(dict.fromkeys(block_of.values()))  # input first
    depth = {block: len(blocks) - index for index, block in enumerate(blocks)}
    return {name: depth[block_of[name]] if name in block_of else 0 for name, _ in model.named_parameters()}


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
