"""Sharded evaluation under torchrun / accelerate launch: which rank this process is, and its process group.

The launchers set RANK, WORLD_SIZE and LOCAL_RANK (one node or many); without them the run is one process and
nothing here starts a process group."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Hashable, Sequence

from zsvqa.errors import InputError

# A rank that finishes early waits at the final barrier for the slowest; a full VQAv2 shard takes hours, far
# beyond torch's 30-minute default.
BARRIER_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank


def shard_from_env() -> Shard:
    """This process's place in the launch, from the variables torchrun and accelerate set."""
    try:
        rank, world, local = (int(os.environ.get(name, default)) for name, default in
                              (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    except ValueError as error:
        raise InputError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({error})") from error
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK {rank} is not within WORLD_SIZE {world}")
    return Shard(rank, world, local)


def assign_images(image_ids: Sequence[Hashable], shard: Shard) -> set[Hashable]:
    """The images this rank answers: every world_size-th of the sorted ids, so the split depends only on the data
    and the world size (never on the launch order), and every image goes to exactly one rank."""
    ordered = sorted(image_ids, key=lambda i: (isinstance(i, str), i))
    return {image_id for index, image_id in enumerate(ordered) if shard.owns(index)}


def start(shard: Shard, device: str) -> None:
    """Join the process group: nccl for GPUs, gloo for the CPU. Each rank's `cuda` is then its own GPU
    (LOCAL_RANK), so the config, and the run folder's config.json, stay the same on every rank."""
    import torch
    import torch.distributed as dist

    if not shard.distributed or dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(shard.local_rank)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)


def barrier(shard: Shard) -> None:
    import torch.distributed as dist

    if shard.distributed and dist.is_initialized():
        dist.barrier()


def finish(shard: Shard) -> None:
    import torch.distributed as dist

    if shard.distributed and dist.is_initialized():
        dist.destroy_process_group()
