"""Data-parallel training across processes with torch's DistributedDataParallel, started by `torchrun`.

`torchrun --nproc_per_node=N -m dgdehaze_core.cli train --config R.yaml` runs N copies of the same recipe: each
process (rank) builds the same model, DDP makes its weights rank 0's and averages the gradients at every step, and
each rank draws its own crops (`Shard`), so one iteration learns from N batches. Rank 0 alone writes the run folder
(checkpoints, logs, validation), with every rank's random state; every rank resumes from the same last.pt. The
process group runs on gloo for the CPU and NCCL for CUDA; across machines torchrun's rendezvous options do the rest
(docs/SCALING.md).

Without torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) training is the one-process loop it always was.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rank:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def writer(self) -> bool:
        """The one rank that writes checkpoints, logs and validation figures."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Rank:
        """The rank torchrun gave this process; ValueError when its variables are inconsistent."""
        try:
            rank = int(os.environ.get("RANK", "0"))
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise ValueError(f"rank {rank} of world size {world_size} (local rank {local_rank}) is not a place in a "
                             "job")
        return cls(rank, world_size, local_rank)


def device_for(rank: Rank, device: torch.device) -> torch.device:
    """One GPU per process: a CUDA device becomes this rank's local GPU; the CPU stays the CPU."""
    if rank.distributed and device.type == "cuda":
        return torch.device("cuda", rank.local_rank)
    return device


def start(rank: Rank, device: torch.device) -> None:
    """Join the job's process group (gloo on the CPU, NCCL on CUDA); nothing without torchrun."""
    if not rank.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    LOG.info("rank %d of %d joined the %s process group", rank.rank, rank.world_size, backend)


def stop(rank: Rank) -> None:
    if rank.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, rank: Rank, device: torch.device) -> torch.nn.Module:
    """The model as the training step calls it: DDP across the job (rank 0's weights broadcast now, gradients
    averaged in every backward), or the model itself in one process. Some losses leave parts of the network
    unused in a step, so DDP looks for unused parameters."""
    if not rank.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def share_state(module: torch.nn.Module, rank: Rank) -> None:
    """Give every rank rank 0's weights and buffers of a module that trains outside DDP (the adversarial
    discriminator), so the ranks start it alike; `average_gradients` then keeps them alike."""
    if rank.distributed:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(module: torch.nn.Module, rank: Rank) -> None:
    """Average a module's gradients over the job after its backward (what DDP does for the model), so that every
    rank's optimiser takes the same step and a module outside DDP does not drift apart across ranks."""
    if not rank.distributed:
        return
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad.div_(rank.world_size)


def share_buffers(model: torch.nn.Module, rank: Rank) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics, which each rank's last forward pass moved on its
    own batch), so that every rank ends with the model rank 0 saves. The weights already agree: DDP averaged the
    gradients of every step."""
    if rank.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def gather(value: object, rank: Rank) -> list[object]:
    """Every rank's `value` in rank order (a picklable object); every rank must call this at the same point."""
    if not rank.distributed:
        return [value]
    gathered: list[object] = [None] * rank.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(rank: Rank) -> None:
    """Wait until every rank got here; every rank must call this at the same point."""
    if rank.distributed:
        dist.barrier()


def step_boundary_agreement(requested: bool, worker_died: bool, rank: Rank,
                            device: torch.device) -> tuple[bool, int | None]:
    """At a step boundary, in one collective: whether any rank was asked to stop, and the lowest rank whose data
    loader worker died (None: none did); every rank must call this at the same point."""
    if not rank.distributed:
        return requested, rank.rank if worker_died else None
    value = torch.tensor([int(requested), rank.world_size - rank.rank if worker_died else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    stop, died = (int(v) for v in value.tolist())
    return bool(stop), rank.world_size - died if died else None


class Shard(Sampler[int]):
    """The sample indices one rank trains on from `first_iteration` to `iterations`, made as they are drawn (a run
    of millions of iterations holds no list of them): at each iteration the job takes world_size consecutive
    batches of the one index stream, rank r the r-th. In one process this is the stream itself, so a one-process
    run draws what it always drew."""

    def __init__(self, first_iteration: int, iterations: int, batch_size: int, rank: Rank) -> None:
        self.iterations = range(first_iteration, iterations)
        self.batch_size, self.rank = batch_size, rank

    def __len__(self) -> int:
        return len(self.iterations) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for iteration in self.iterations:
            start = (iteration * self.rank.world_size + self.rank.rank) * self.batch_size
            yield from range(start, start + self.batch_size)
