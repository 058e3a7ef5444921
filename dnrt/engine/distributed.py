"""Multi-process runs: read the environment torchrun or submitit (SLURM tasks) provides."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..types import DistInfo

__all__ = ["DistInfo", "broadcast_object", "init_distributed"]


def init_distributed() -> DistInfo:
    """Called by the entry point, once per job: join the process group when launched by torchrun
    (``RANK``/``WORLD_SIZE``) or as several SLURM tasks by submitit (``tasks_per_node`` > 1); a single
    process returns rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        try:
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        except (ImportError, RuntimeError):  # not inside a submitit job: stay single-process
            pass
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank)


def broadcast_object(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
