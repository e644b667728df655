"""The training loop's state as small typed objects, and their form inside last.pt.

    trained = train_one_epoch(model, loader, opt, ctx, epoch=3)  # EpochResult: loss, accuracy, images, seconds, ...
    if trained.interrupted is not None:                          # PartialEpoch: what continuing the epoch needs
        training["interrupted"] = trained.interrupted.state_dict()
    progress = Progress.from_state_dict(last["training"]["progress"])  # best score so far, its epoch, epochs since
    improved = progress.record(val["accuracy"], epoch=3)

`state_dict()` gives plain numbers and tensors (checkpoints load with `torch.load(weights_only=True)`) under the keys
of checkpoint format 1, so last.pt files written before these types existed resume unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class PartialEpoch:
    """An epoch cut short by Ctrl-C or SIGTERM: its totals so far (over every process) and where to continue.

    last.pt keeps it as training.interrupted; `PartialEpoch()` is an epoch not started yet.
    """

    steps: int = 0  # optimizer steps done in the epoch; the sampler skips their batches on resuming
    loss_sum: float = 0.0  # summed over the images seen, not averaged
    correct: int = 0
    seen: int = 0  # images
    seconds: float = 0.0
    rng: torch.Tensor | None = None  # the CPU generator's state after the last step (dropout goes on from there)
    rngs: list[torch.Tensor] | None = None  # under torchrun: every process's `rng`, in rank order (each has its own)

    def state_dict(self) -> dict[str, Any]:
        state = {"steps": self.steps, "loss_sum": self.loss_sum, "correct": self.correct, "seen": self.seen,
                 "seconds": self.seconds, "rng": self.rng}  # fmt: skip
        if self.rngs is not None:
            state["rngs"] = self.rngs
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PartialEpoch:
        return cls(state["steps"], state["loss_sum"], state["correct"], state["seen"], state["seconds"], state["rng"],
                   state.get("rngs"))  # fmt: skip

    def rng_of(self, rank: int) -> torch.Tensor:
        """The generator state process `rank` continues from."""
        return self.rngs[rank] if self.rngs is not None else self.rng


@dataclass
class EpochResult:
    """One pass over the training loader, with totals over every process."""

    loss: float  # mean cross-entropy over the images seen
    accuracy: float
    images: int
    seconds: float  # the whole epoch's, also the part before an interruption
    first_step_seconds: float  # with --compile, mostly compiling
    lr: float = 0.0  # the learning rate the pass's last step used (batches.csv's last row of the epoch)
    interrupted: PartialEpoch | None = None  # set when a stop request ended the pass early: what resuming needs

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


@dataclass
class Progress:
    """The best validation score so far (of --best-metric), its epoch, and the epochs since (for --patience).

    last.pt keeps it as training.progress.
    """

    best: float = -math.inf
    best_epoch: int = 0
    stale: int = 0  # epochs validated since the best one

    def record(self, score: float, epoch: int) -> bool:
        """Count one validated epoch; True when its score beats the best so far."""
        if score > self.best:
            self.best, self.best_epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "stale": self.stale}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Progress:
        return cls(state["best"], state["best_epoch"], state["stale"])
