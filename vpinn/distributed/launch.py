"""Joining the process group that ``torchrun`` describes in the environment.

``torchrun --nproc_per_node=K run.py solve X.toml`` starts K copies of the command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; a command
started otherwise (no ``WORLD_SIZE``, or 1) runs on its own with the do-nothing
:data:`~vpinn.distributed.group.LOCAL` group.  The backend follows the device: gloo on the CPU,
nccl on CUDA, where rank r of a node uses GPU ``LOCAL_RANK``.  Stop decisions always use an
extra gloo group (:class:`~vpinn.distributed.group.ProcessGroup`).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from vpinn.distributed.group import LOCAL, Group, ProcessGroup

#: how long a collective waits for a missing rank before it fails (instead of hanging)
TIMEOUT = timedelta(minutes=5)


def world_size() -> int:
    """The number of ranks ``torchrun`` started (1 when not started by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launch_rank() -> int:
    """This process's rank among those ``torchrun`` started (0 when not started by it)."""
    return int(os.environ.get("RANK", "0"))


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA under ``torchrun``, else ``device``."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def start(device: torch.device, compression: str = "none", bits: int = 6, seed: int = 0) -> Group:
    """Join the run's process group (or return :data:`LOCAL` outside ``torchrun``).

    ``compression``, ``bits`` and ``seed`` choose the hook of minibatch gradient sums
    (:data:`~vpinn.distributed.compression.COMPRESSIONS`).
    """
    if world_size() <= 1:
        return LOCAL
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=TIMEOUT)
    return ProcessGroup(control, compression, bits, seed)


def finish(group: Group) -> None:
    """Leave the process group joined by :func:`start` (nothing for :data:`LOCAL`)."""
    if group.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
