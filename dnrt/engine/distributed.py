"""Multi-process runs: read the environment torchrun or submitit (SLURM tasks) provides."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from ..types import DistInfo

__all__ = ["DistInfo", "broadcast_object", "by_rank", "gather_objects", "init_distributed", "own_entry", "rank_share",
           "stop_agreed", "wait_for_all"]

# A gloo group over every rank for host-side votes (the per-step stop flag) when the default backend
# is NCCL: a CPU collective there costs no CUDA synchronisation. None: use the default group.
_HOST_GROUP: dist.ProcessGroup | None = None


def init_distributed() -> DistInfo:
    """Called by the entry point, once per job: join the process group when launched by torchrun
    (``RANK``/``WORLD_SIZE``) or as several SLURM tasks by submitit (``tasks_per_node`` > 1); a single
    process returns rank 0 of 1. With NCCL it also creates the gloo group of the host-side votes."""
    global _HOST_GROUP
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
    if backend == "nccl":  # created here, once, so that every rank creates its groups in the same order
        _HOST_GROUP = dist.new_group(backend="gloo")
    return DistInfo(rank, world, local_rank)


def broadcast_object(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _host_vote_args() -> tuple[dist.ProcessGroup | None, torch.device]:
    """The group for a host-side collective and where its tensor lives: the gloo side group on the
    CPU, or the default group (on the current CUDA device when it is NCCL and has no side group)."""
    if _HOST_GROUP is not None or dist.get_backend() != "nccl":
        return _HOST_GROUP, torch.device("cpu")
    return None, torch.device("cuda", torch.cuda.current_device())


def stop_agreed(local: int) -> int:
    """The largest of every rank's ``local`` stop code (0: go on; else why, e.g. a signal number), the
    same answer on every rank.

    Signals reach the ranks at different moments; a rank that stopped alone would leave the others
    waiting in the next gradient all-reduce, and a rank that stops without the signal must still
    know it (rank 0 hands a SIGUSR2 over to submitit, which requeues the job). One all-reduce (MAX)
    per call; without a process group, ``local`` itself and no collective."""
    if not (dist.is_available() and dist.is_initialized()):
        return int(local)
    group, device = _host_vote_args()
    code = torch.tensor([int(local)], dtype=torch.int32, device=device)
    dist.all_reduce(code, op=dist.ReduceOp.MAX, group=group)
    return int(code.item())


def wait_for_all() -> None:
    """Block until every rank got here (no-op without a process group): e.g. until rank 0 has
    written the checkpoint a stop needs, before another rank leaves."""
    if dist.is_available() and dist.is_initialized():
        group, device = _host_vote_args()
        dist.barrier(group=group, device_ids=[device.index] if device.type == "cuda" else None)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def by_rank(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` [n], stacked in rank order: [world, n] (``t`` itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t)
    return torch.stack(parts)


def rank_share(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a tensor saved from :func:`by_rank`: its own row of [world, n]. One saved by
    another number of processes ([n], or other rows) counts once, on rank 0 (zeros elsewhere)."""
    rank, world = _rank_world()
    if t.dim() == 2 and t.shape[0] == world:
        return t[rank]
    total = t if t.dim() == 1 else t.sum(0)
    return total if rank == 0 else torch.zeros_like(total)


def gather_objects(obj: Any) -> list | None:
    """Every rank's ``obj`` (picklable) in rank order, on every rank, over the host-side group (no CUDA
    synchronisation under NCCL); None without a process group. What a rank keeps for itself, such as
    its random state, goes into a checkpoint that rank 0 alone writes this way."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=_HOST_GROUP)
    return out


def own_entry(entries: list | None) -> Any:
    """This rank's entry of a :func:`gather_objects` list saved by as many ranks as there are now; None
    when there is none (a single process, or a checkpoint of another number of ranks)."""
    rank, world = _rank_world()
    if not entries or world == 1 or len(entries) != world:
        return None
    return entries[rank]
