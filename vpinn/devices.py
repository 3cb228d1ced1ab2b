"""The compute device: which one to use, and waiting for it (for honest timings)."""

from __future__ import annotations

import torch

from vpinn.errors import VpinnError


def choose_device(requested: str | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1"), else CUDA when available, else the CPU."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise VpinnError("unknown device (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VpinnError("CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise VpinnError("only cpu and cuda are supported")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
