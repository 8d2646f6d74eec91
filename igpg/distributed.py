"""Multi-process training of the generator with ``torch.distributed`` (DDP), as launched by ``torchrun``.

One process per GPU (or several CPU processes on the gloo backend); each process runs the same program.
A launch is detected from ``$WORLD_SIZE > 1`` (set by torchrun together with ``$RANK``, ``$LOCAL_RANK``,
``$MASTER_ADDR`` and ``$MASTER_PORT``). Without it nothing here does anything: every helper is a no-op or
returns the single-process answer, no process group is created, and training gives exactly the results it
gives without this module.

Launch ``zoo train`` on every GPU of one machine::

    torchrun --standalone --nproc_per_node 4 -m zoo train --arch cnn-tiny

(``python -m torch.distributed.run`` is the same program as ``torchrun``.) On two machines, run on each::

    torchrun --nnodes 2 --node_rank <0|1> --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint <host of node 0>:29500 -m zoo train --arch cnn-tiny

The backend is NCCL for CUDA tensors (gloo for CPU tensors beside it) when training on CUDA, gloo when on
CPU (``--device cpu`` or no GPU). :func:`igpg.train_generator` and :func:`igpg.train_on_registry` create
the process group themselves when launched this way and destroy it when done; a script that wants to keep
the group (say, to compare ranks afterwards) calls :func:`init_from_env` first and :func:`cleanup` last.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")

_RANK_SEED_STRIDE = 10_007  # rank r draws its data from seed + r * stride (rank 0: the single-process seed)


def launched() -> bool:
    """Whether this process was started by a multi-process launcher (``$WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Whether training runs in a process group of more than one process."""
    return is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """This process's index on its machine (``$LOCAL_RANK``; 0 when not launched): which GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def is_main() -> bool:
    """Whether this is the process that logs, shows progress, saves and writes to the registry.

    Rank 0 of the process group; before :func:`init_from_env` or after :func:`cleanup` of a launched
    process, the launcher's ``$RANK`` decides, so output stays on one process throughout.
    """
    if is_initialized():
        return dist.get_rank() == 0
    return not launched() or os.environ.get("RANK", "0") == "0"


def backend_for(device: str | torch.device = "auto") -> str:
    """The process-group backend for training on ``device``: NCCL (with gloo for CPU tensors) on CUDA."""
    kind = (
        torch.device(device).type if str(device) != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    )
    if kind == "cuda" and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def init_from_env(device: str | torch.device = "auto", timeout_s: float = 1800.0) -> bool:
    """Create the default process group from the launcher's environment, if launched and none exists yet.

    ``device`` is the training device (``"auto"``, ``"cpu"``, ``"cuda"``): it picks the backend, and on CUDA
    this process's GPU becomes ``cuda:$LOCAL_RANK``. Returns True when this call created the group (its
    caller then owns it and calls :func:`cleanup`), False when single-process or already initialised.
    """
    if not launched() or is_initialized():
        return False
    if not dist.is_available():
        raise RuntimeError("launched with WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    backend = backend_for(device)
    if "nccl" in backend:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    log.info("process group: rank %d of %d, backend %s", rank(), world_size(), backend)
    return True


def cleanup() -> None:
    """Destroy the default process group (no-op without one)."""
    if is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: str | torch.device = "auto") -> Iterator[bool]:
    """A process group for the duration of the block when launched; yields whether training is distributed.

    Destroys the group at the end only if this block created it (nested sessions share the outer one).
    """
    owned = init_from_env(device)
    try:
        yield is_distributed()
    finally:
        if owned:
            cleanup()


def backend() -> str | None:
    """The backend of the default process group, or None without one."""
    return str(dist.get_backend()) if is_initialized() else None


def rank_seed(seed: int, for_rank: int | None = None) -> int:
    """The seed of ``for_rank``'s (default: this rank's) own random stream; rank 0 keeps ``seed`` itself."""
    r = rank() if for_rank is None else for_rank
    return seed + _RANK_SEED_STRIDE * r


def shard(total: int) -> int:
    """This rank's share of ``total`` items (the shares of all ranks add up to ``total``; at least 1)."""
    w, r = world_size(), rank()
    return max(1, total // w + (1 if r < total % w else 0))


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (every rank gets the same result); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over ranks, as a new float tensor (``tensor`` itself when not distributed)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().float().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def mean_over_ranks(value: float) -> float:
    """The mean of a Python number over ranks (``value`` itself when not distributed)."""
    if not is_distributed():
        return value
    return float(
        all_reduce_mean(torch.tensor(float(value), dtype=torch.float64, device=_collective_device()))
    )


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s in place; returns it."""
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` (any picklable object) on every rank; ``obj`` itself when not distributed."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def main_first(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on the main rank while the others wait; returns its result there and None elsewhere.

    An exception on the main rank is re-raised there and reported on every other rank as a
    :class:`~zoo.errors.GeneratorError`, so no rank is left waiting for a collective that never comes.
    """
    if not is_distributed():
        return fn()
    from zoo.errors import GeneratorError

    result: T | None = None
    failure: str | None = None
    error: BaseException | None = None
    if is_main():
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the other ranks
            error, failure = exc, f"{type(exc).__name__}: {exc}"
    failure = broadcast_object(failure)
    if error is not None:
        raise error
    if failure is not None:
        raise GeneratorError(f"rank 0 failed, so rank {rank()} stops too: {failure}")
    return result


def wrap(
    module: torch.nn.Module, device: torch.device, *, sync_buffers: bool = True, **kwargs: Any
) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when distributed, ``module`` itself otherwise.

    Parameters and buffers start as rank 0's. ``sync_buffers=False`` stops DDP from broadcasting rank 0's
    buffers before every forward (for modules that keep their buffers in sync themselves, like the EMA
    quantizer). Other ``kwargs`` go to DDP (e.g. ``find_unused_parameters``).
    """
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    if not sync_buffers:
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
            kwargs["forward_sync_buffers"] = False  # newer PyTorch: still syncs them once at the start
        else:
            kwargs["broadcast_buffers"] = False  # older PyTorch: this skips the start too, so do it here
            for buf in module.buffers():
                dist.broadcast(buf, 0)
    ids = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else None
    )
    return DistributedDataParallel(module, device_ids=ids, **kwargs)


def _collective_device() -> torch.device:
    """Where object and scalar collectives put their tensors: the GPU under a NCCL-only group, else CPU."""
    if is_initialized() and str(dist.get_backend()) == "nccl":  # a group made elsewhere, without gloo
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


__all__ = [
    "all_reduce_mean",
    "all_reduce_sum_",
    "backend",
    "backend_for",
    "barrier",
    "broadcast_",
    "broadcast_object",
    "cleanup",
    "gather_objects",
    "init_from_env",
    "is_distributed",
    "is_initialized",
    "is_main",
    "launched",
    "local_rank",
    "main_first",
    "mean_over_ranks",
    "rank",
    "rank_seed",
    "session",
    "shard",
    "world_size",
    "wrap",
]
