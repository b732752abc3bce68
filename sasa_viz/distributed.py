"""Training on several processes, started by torchrun (PyTorch's launcher): one process
per GPU with NCCL, or per CPU worker with gloo, on one machine or many.

    torchrun --standalone --nproc_per_node=2 -m sasa_viz.train --model ... --data ...

torchrun gives every process RANK, LOCAL_RANK and WORLD_SIZE; `join` reads them and joins
the process group (a plain `python -m sasa_viz.train` is a world of one, and nothing is
joined). Only the main process (rank 0) logs, writes checkpoints and the weights; every
process reads a checkpoint to resume, so the folder must be one they all see.
"""
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int               # this process, 0 .. size - 1
    size: int               # processes in all
    local_rank: int         # this process on its machine: its GPU
    device: torch.device

    @property
    def main(self) -> bool:
        """The process that logs and writes."""
        return self.rank == 0


def join(device: torch.device) -> World:
    """This process's place in the run; under torchrun (WORLD_SIZE > 1) it joins the
    process group: NCCL with one GPU per process when `device` is CUDA, gloo on CPUs."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(0, 1, 0, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(rank, size, local_rank, device)


def wait(world: World) -> None:
    """Every process waits here for the others (e.g. for rank 0 to write a file)."""
    if world.size > 1:
        dist.barrier()


def mean(world: World, value: float) -> float:
    """The mean over the processes of a number each has."""
    if world.size == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total) / world.size


def same_everywhere(world: World, module: torch.nn.Module) -> bool:
    """Whether every process holds exactly the weights this one does (compared by a
    sha256 of their bytes). Buffers are left out: each process's batch norm statistics
    come from its own batches (rank 0's are the ones written)."""
    digest = hashlib.sha256()
    for name, tensor in module.named_parameters():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    if world.size == 1:
        return True
    everyone = [None] * world.size
    dist.all_gather_object(everyone, digest.hexdigest())
    return len(set(everyone)) == 1


def leave(world: World) -> None:
    if world.size > 1:
        dist.destroy_process_group()
