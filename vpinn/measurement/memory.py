"""Memory readings (peak and current, CPU and CUDA) and the CPU allocator's settings.

Peak memory is measured as follows (README, "Memory"):

* CUDA: ``torch.cuda.max_memory_allocated`` - bytes of live tensors at the peak, exact.
* CPU: the process's peak resident set size, ``VmHWM`` from ``/proc/self/status`` (Linux), or
  ``ru_maxrss`` from :func:`resource.getrusage` elsewhere.  It includes the interpreter and
  torch's own footprint, so comparisons subtract a baseline read just before the work starts,
  in a fresh process per case (``run.py memory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from pathlib import Path

import torch


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc ``malloc_trim``), so that a resident-size
    baseline read next counts only memory in use, whatever the process did before."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def keep_freed_memory() -> bool:
    """Stop glibc from returning large freed blocks to the OS after every training step.

    By default glibc serves each large tensor with a fresh ``mmap`` and unmaps it when freed,
    so every step pays page faults and zeroing for all its activations.  Disabling mmap for
    large blocks and raising the trim threshold keeps freed memory in the heap for reuse
    (``run.py memory --allocator`` measures the effect).  Returns False where glibc is absent.
    """
    libc = _libc()
    if libc is None:
        return False
    return libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1


def _status_bytes(field: str) -> int | None:
    """A memory field (``VmHWM``, ``VmRSS``) of ``/proc/self/status`` in bytes; None off Linux."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def peak_resident_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (CPU memory)."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage if sys.platform == "darwin" else usage * 1024


def current_resident_bytes() -> int:
    """Current resident set size of this process, in bytes (0 where unknown)."""
    return _status_bytes("VmRSS") or 0


def peak_reserved_bytes(device: torch.device) -> int | None:
    """Peak memory the CUDA caching allocator held (allocated plus cached free blocks); None on
    the CPU, where the peak resident size already counts what the allocator holds."""
    return torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of ``device``: CUDA tensors at their peak, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return peak_resident_bytes()
