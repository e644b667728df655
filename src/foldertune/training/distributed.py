"""Several processes, one run: PyTorch's DistributedDataParallel as `torchrun` starts it.

    torchrun --nproc_per_node=4 -m foldertune train photos/ ...     # every process runs the same command

    dist = Distributed.from_environment()   # world_size 1 without torchrun: every method is then a no-op
    dist.start(runtime)                     # the process group: NCCL on GPUs, gloo on CPUs
    data = dist.from_main(lambda: prepare_data(...))  # rank 0 works; every rank gets its result (or its UserError)
    if dist.is_main: ...                    # only rank 0 writes the run folder
    totals = dist.sum([loss_sum, correct, seen])

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR / MASTER_PORT) for each process; a run started
without it has none of them and runs exactly as before. Each process trains on its own shard of every epoch
(torch's DistributedSampler over the epoch's seeded order), gradients are averaged by DDP, and the validation
predictions of all processes are gathered so that metrics cover the whole validation set once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

from foldertune.errors import UserError

T = TypeVar("T")


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None  # nccl | gloo once started
    collective_device: torch.device = field(default_factory=lambda: torch.device("cpu"), repr=False)

    @classmethod
    def from_environment(cls) -> Distributed:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> str:
        """The device this process uses: with CUDA, the GPU of its local rank."""
        if self.enabled and requested in ("auto", "cuda") and torch.cuda.is_available():
            if self.local_rank >= torch.cuda.device_count():
                raise UserError(
                    f"process {self.rank} has local rank {self.local_rank}, but this machine has only "
                    f"{torch.cuda.device_count()} GPU(s); start at most that many per node (--nproc_per_node)."
                )
            torch.cuda.set_device(self.local_rank)
            return f"cuda:{self.local_rank}"
        return requested

    def start(self, device: torch.device) -> None:
        """Join the process group (once): NCCL between GPUs, gloo between CPU processes."""
        if not self.enabled or torch_dist.is_initialized():  # joined already: cross-validation's next fold
            self.backend = torch_dist.get_backend() if torch_dist.is_initialized() else None
            if self.backend == "nccl":
                self.collective_device = device
            return
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend=self.backend)
        self.collective_device = device if self.backend == "nccl" else torch.device("cpu")  # NCCL needs GPU tensors

    def close(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.barrier()
            torch_dist.destroy_process_group()

    def from_main(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 only and hand its result to every rank; its UserError stops every rank alike."""
        if not self.enabled:
            return work()
        outcome: list[Any] = [None]
        if self.is_main:
            try:
                outcome = [("ok", work())]
            except UserError as error:
                outcome = [("error", str(error))]
                torch_dist.broadcast_object_list(outcome, src=0)
                raise
            except BaseException:
                torch_dist.broadcast_object_list([("error", "rank 0 failed; see its traceback")], src=0)
                raise
        torch_dist.broadcast_object_list(outcome, src=0)
        status, value = outcome[0]
        if status == "error":
            raise UserError(value)
        return value

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over all processes (float64, so counts stay exact)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.collective_device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on any (a stop request must end the same step everywhere)."""
        if not self.enabled:
            return flag
        return self.sum([float(flag)])[0] > 0

    def gather(self, value: T) -> list[T]:
        """Every process's `value`, in rank order, on every process."""
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(gathered, value)
        return gathered

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every process: each process's last training step
        updated its own, but the checkpoint, which validation must match, holds rank 0's."""
        if not self.enabled:
            return
        for buffer in module.buffers():
            torch_dist.broadcast(buffer.data, src=0)

    def describe(self) -> dict[str, Any]:
        """For config.json: which processes ran, where (gathered from every rank)."""
        me = {"rank": self.rank, "local_rank": self.local_rank, "host": socket.gethostname(), "pid": os.getpid()}
        return {"world_size": self.world_size, "backend": self.backend, "processes": self.gather(me)}


def shard(items: list[T], rank: int, world_size: int) -> list[T]:
    """This process's share of `items`, round-robin (the feature extraction of linear mode)."""
    return items[rank::world_size]


def unshard(parts: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of `shard` for tensors whose first axis follows the items: parts in rank order."""
    total = sum(len(part) for part in parts)
    merged = parts[0].new_empty((total, *parts[0].shape[1:]))
    for rank, part in enumerate(parts):
        merged[rank :: len(parts)] = part
    return merged
