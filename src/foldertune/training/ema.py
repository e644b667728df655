"""--ema: an exponential moving average of the weights, kept beside the trained network, updated after every step.

    ema = WeightAverage(model, decay=0.999)   # a copy of model (parameters and buffers), on its device
    ema.update()                              # after each optimizer step: averaged = d * averaged + (1 - d) * model
    ema.module                                # what validation runs and best.pt holds
    state = ema.state_dict(); ema.load_state_dict(state)   # last.pt's "ema": --resume continues the same average

torch's `AveragedModel` with its EMA update does the averaging. The decay of step n is min(decay, (1 + n) / (10 + n)),
the warm-up of TensorFlow's ExponentialMovingAverage (timm's ModelEmaV2/V3 warm up likewise): a run of 40 steps, as
on a few hundred photos, would otherwise end with an average still 96% made of the pretrained starting point
(0.999^40); with the warm-up it averages roughly the last tenth of the run. BatchNorm running statistics (buffers)
are averaged along with the weights, so the averaged network's normalisation matches its averaged weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

WARMUP_STEPS = 10  # the decay of step n is at most (1 + n) / (WARMUP_STEPS + n)


class WeightAverage:
    """The running average of `model`'s weights and buffers; `model` is the unwrapped network the optimizer steps."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model, self.decay = model, decay
        self.averaged = AveragedModel(model, multi_avg_fn=self._update, use_buffers=True)
        self.updates = 0  # AveragedModel's n_averaged, counted here too: reading that tensor would wait for the GPU

    @property
    def module(self) -> nn.Module:
        """The averaged network: same class and state_dict keys as `model`."""
        return self.averaged.module

    def decay_at(self, steps_averaged: int) -> float:
        """The decay that step number `steps_averaged` (0 for the first update after the copy) uses."""
        return min(self.decay, (1 + steps_averaged) / (WARMUP_STEPS + steps_averaged))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights and buffers into the average (the first call copies them)."""
        self.averaged.update_parameters(self.model)
        self.updates += 1

    def _update(self, averaged: list[torch.Tensor], current: list[torch.Tensor], count: torch.Tensor) -> None:
        # called once per device and dtype; self.updates counts the first call, a plain copy, too
        get_ema_multi_avg_fn(self.decay_at(self.updates - 1))(averaged, current, count)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and buffers and the update count: what --resume needs to continue the average."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
        self.updates = int(self.averaged.n_averaged)
