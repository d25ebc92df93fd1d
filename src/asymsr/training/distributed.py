"""Data-parallel training across processes: the ``torchrun`` environment and a few collectives.

``torchrun --nproc-per-node N`` starts N copies of the program and tells each its place
through the environment: ``WORLD_SIZE`` (N times the number of nodes), ``RANK`` (0 .. N-1,
unique over all nodes) and ``LOCAL_RANK`` (its index on this node). :func:`placement` reads
them without talking to any other process; :func:`process_group` then joins the processes
(backend ``nccl`` on CUDA, ``gloo`` on the CPU) for as long as training runs.

Without ``torchrun`` (or with ``WORLD_SIZE=1``) the placement is a single process and every
helper here is the identity, so the single-process path runs exactly the code it always did.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist

from asymsr.nn.devices import resolve_device

T = TypeVar("T")


class MainProcessFailed(RuntimeError):
    """Rank 0 raised while the other ranks waited for it (its error is in the message)."""


def torchrun_environment() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when started by ``torchrun`` with more than one process, else None."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except KeyError as error:
        raise RuntimeError(f"WORLD_SIZE={world_size} is set but {error.args[0]} is not; launch with torchrun") from None
    if not 0 <= rank < world_size:
        raise RuntimeError(f"RANK={rank} is outside 0..{world_size - 1} (WORLD_SIZE={world_size})")
    return rank, world_size, local_rank


def is_main_process() -> bool:
    """Whether this process is rank 0 (always true without ``torchrun``); needs no process group."""
    environment = torchrun_environment()
    return environment is None or environment[0] == 0


@dataclass(frozen=True)
class Placement:
    """Where this process sits among the training processes, and its device.

    Attributes:
        rank: global index of this process, 0 .. ``world_size`` - 1; rank 0 writes and reports.
        world_size: number of training processes (1 = no data parallelism).
        local_rank: index of this process on its node; picks its GPU.
        device: the device this process trains on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        """``"cpu"``, ``"cuda:0"``... for one process, ``"2 processes on cuda"`` for several."""
        return str(self.device) if not self.distributed else f"{self.world_size} processes on {self.device.type}"

    def local_batch_size(self, batch_size: int) -> int:
        """Patches per step on each rank for the global ``batch_size``; raises if it does not divide evenly."""
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the world size {self.world_size}: the batch size is "
                f"the global batch, split evenly over the {self.world_size} processes"
            )
        return batch_size // self.world_size

    def shard(self, batches: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of every global batch: ``batches`` is (steps, batch_size).

        Rank r takes columns ``[r * b, (r + 1) * b)`` with ``b = batch_size / world_size``, so the
        ranks' slices, concatenated in rank order, are the global batch.
        """
        if not self.distributed:
            return batches
        local = self.local_batch_size(batches.shape[1])
        return batches[:, self.rank * local : (self.rank + 1) * local].contiguous()

    def all_reduce(self, value: torch.Tensor, op: Literal["sum", "mean"]) -> torch.Tensor:
        """Sum or mean of ``value`` over all ranks, in float64 (``value`` itself, detached, for one process)."""
        if not self.distributed:
            return value.detach()
        reduced = value.detach().to(torch.float64, copy=True)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced / self.world_size if op == "mean" else reduced

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def run_on_main(self, work: Callable[[], T]) -> T:
        """Run ``work`` on rank 0 only while the other ranks wait; its result is returned on every rank.

        If ``work`` raises on rank 0, the error propagates there and the other ranks raise
        :class:`MainProcessFailed`, so no rank is left waiting.
        """
        if not self.distributed:
            return work()
        if not self.is_main:
            succeeded, value = self.broadcast(None)
            if not succeeded:
                raise MainProcessFailed(f"rank 0 stopped the run: {value}")
            return value
        try:
            value = work()
        except BaseException as error:
            self.broadcast((False, f"{type(error).__name__}: {error}"))
            raise
        return self.broadcast((True, value))[1]


def placement(device: str = "auto") -> Placement:
    """This process's placement from the ``torchrun`` environment; talks to no other process.

    Under ``torchrun``, ``device`` ``"auto"`` or ``"cuda"`` becomes ``cuda:LOCAL_RANK`` (one GPU
    per process); a device naming one GPU (``"cuda:1"``) is refused, since every process would
    then share it. Without ``torchrun`` the device is :func:`asymsr.nn.devices.resolve_device`'s.
    """
    environment = torchrun_environment()
    if environment is None:
        return Placement(rank=0, world_size=1, local_rank=0, device=resolve_device(device))
    rank, world_size, local_rank = environment
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if device not in ("auto", "cuda"):
            raise ValueError(
                f"device {device!r} names one GPU, but under torchrun each process takes the GPU of its local rank; "
                "use device 'cuda' or 'auto'"
            )
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ValueError(
                f"local rank {local_rank} has no GPU of its own: {count} visible; "
                f"start at most {count} processes per node"
            )
        resolved = torch.device("cuda", local_rank)
    return Placement(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


@contextmanager
def process_group(where: Placement) -> Iterator[Placement]:
    """Join the ``torchrun`` process group for the duration (nothing to do for one process).

    The backend is ``nccl`` when the device is CUDA (each process first selects its GPU), else
    ``gloo``. A process group that the caller already initialised is used and left open.
    """
    if not where.distributed or dist.is_initialized():
        if where.distributed and dist.get_world_size() != where.world_size:
            raise RuntimeError(
                f"the initialised process group has {dist.get_world_size()} ranks, WORLD_SIZE says {where.world_size}"
            )
        yield where
        return
    if where.device.type == "cuda":
        torch.cuda.set_device(where.device)
        dist.init_process_group(backend="nccl", device_id=where.device)
    else:
        dist.init_process_group(backend="gloo")
    try:
        yield where
    finally:
        dist.destroy_process_group()


def visible_gpus() -> int:
    """CUDA devices this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def torchrun_command(argv: list[str], processes: int) -> list[str]:
    """The command line that runs ``asymsr <argv>`` as ``processes`` DDP workers on this node."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "asymsr.cli",
        *argv,
    ]
