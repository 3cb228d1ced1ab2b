"""Checkpoints: the whole training state in one file, written atomically.

A checkpoint holds the network weights and dtype, the optimiser and sampler states, the step
counters, the training history and the elapsed training time, so that ``--resume`` continues
exactly where the run stopped (same batches, same optimiser moments).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vpinn.atomic import atomic_path
from vpinn.errors import VpinnError

FORMAT = 1


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (the previous checkpoint survives a failed write)."""
    with atomic_path(path) as temporary:
        torch.save({"format": FORMAT, **state}, temporary)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (onto the CPU)."""
    path = Path(path)
    if not path.exists():
        raise VpinnError(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, without a traceback
        raise VpinnError(f"--resume: {path} is not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise VpinnError(f"--resume: {path} is not a vpinn checkpoint of format {FORMAT}")
    return state
