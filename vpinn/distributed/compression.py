"""Gradient compression for the all-reduce of minibatch gradients (``train.compression``).

A hook takes this rank's flat gradient (P,) and returns the sum over the ranks and the payload
bytes it handed to all-reduce.  ``fp16``, ``bf16`` and ``powersgd`` are PyTorch's own DDP
communication hooks (``torch.distributed.algorithms.ddp_comm_hooks``), called on one bucket
that holds the whole gradient (:class:`FlatBucket`, the part of ``GradBucket`` they read);
they average, so the buffer is multiplied by K first (vpinn's estimates are sums, see
:mod:`vpinn.distributed.group`).  ``dither`` is vpinn's subtractive-dithered quantisation
(:mod:`vpinn.distributed.dither`).  Only first-order minibatch steps (Adam) compress: the exact
full-rule gradients of ENGD, L-BFGS and MSQN are summed exactly.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

from vpinn.distributed import dither

Tensor = torch.Tensor
#: (group, flat gradient, key) -> (summed flat gradient, payload bytes)
Hook = Callable[[object, Tensor, int], tuple[Tensor, int]]


class FlatBucket:
    """The whole gradient as one DDP bucket: what PyTorch's hooks read of a ``GradBucket``
    (the flat buffer, its index, whether it is the last, and per-parameter views)."""

    def __init__(self, buffer: Tensor, shapes: Sequence[torch.Size]):
        self._buffer, self.shapes = buffer, list(shapes)

    def buffer(self) -> Tensor:
        return self._buffer

    def index(self) -> int:
        return 0

    def is_last(self) -> bool:
        return True

    def gradients(self) -> list[Tensor]:
        views, offset = [], 0
        for shape in self.shapes:
            count = shape.numel()
            views.append(self._buffer[offset:offset + count].view(shape))
            offset += count
        return views


def exact_hook(group, flat: Tensor, key: int) -> tuple[Tensor, int]:
    """No compression: the plain sum."""
    dist.all_reduce(flat)
    return flat, flat.numel() * flat.element_size()


def cast_hook(pytorch_hook, width: int) -> Hook:
    """PyTorch's ``fp16_compress_hook`` / ``bf16_compress_hook``: the sum of the gradients
    rounded to a ``width``-byte float."""

    def hook(group, flat: Tensor, key: int) -> tuple[Tensor, int]:
        flat.mul_(group.size)
        summed = pytorch_hook(None, FlatBucket(flat, [flat.shape])).wait()
        return summed, flat.numel() * width

    return hook


class PowerSgd:
    """PyTorch's ``powerSGD_hook`` (rank-``rank`` approximations of every weight matrix, with
    error feedback and warm start) on the one flat bucket; biases and vectors go uncompressed.
    It all-reduces uncompressed for the first ``start`` steps, as PyTorch's hook does.

    ``shapes`` are the parameters' shapes (the bucket's per-parameter views).  The payload is
    read from the hook's own count of elements after compression.
    """

    def __init__(self, shapes: Sequence[torch.Size], seed: int, rank: int = 4, start: int = 10):
        self.shapes = list(shapes)
        self.state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=rank,
                                                 start_powerSGD_iter=start, random_seed=seed)

    def __call__(self, group, flat: Tensor, key: int) -> tuple[Tensor, int]:
        before = self.state.total_numel_after_compression
        flat.mul_(group.size)
        summed = powerSGD_hook.powerSGD_hook(self.state, FlatBucket(flat, self.shapes)).wait()
        if isinstance(summed, list):  # the future of the compressed path yields [tensor]
            summed = summed[0]
        numel = self.state.total_numel_after_compression - before
        return summed, (numel or flat.numel()) * flat.element_size()


class Dither:
    """Subtractive-dithered quantisation to ``bits`` bits with one step per parameter tensor (of
    ``shapes``; see :mod:`vpinn.distributed.dither`); the dithers of step ``key`` come from a
    generator seeded from ``(seed, key)``."""

    def __init__(self, shapes: Sequence[torch.Size], bits: int, seed: int):
        self.sizes, self.bits, self.seed = [shape.numel() for shape in shapes], bits, seed

    def generator(self, key: int, device: torch.device) -> torch.Generator:
        """The dither generator of step ``key``, identical on every rank."""
        return torch.Generator(device=device).manual_seed((self.seed * 0x9E3779B97F4A7C15 + key) % (1 << 63))

    def __call__(self, group, flat: Tensor, key: int) -> tuple[Tensor, int]:
        largest = dither.tensor_maxima(flat, self.sizes)
        dist.all_reduce(largest, op=dist.ReduceOp.MAX)
        delta = dither.per_coordinate(dither.step_size(largest, self.bits), self.sizes)
        noise = dither.dithers(self.generator(key, flat.device), group.size, flat.numel(), flat.dtype, flat.device)
        codes = dither.encode(flat, delta, noise[group.rank], dither.transport_dtype(self.bits, group.size))
        dist.all_reduce(codes)
        sent = codes.numel() * codes.element_size() + largest.numel() * largest.element_size()
        return dither.decode(codes, delta, noise.sum(0)), sent


#: ``train.compression`` -> the hook for parameters of the given shapes, ``bits`` and ``seed``
COMPRESSIONS: dict[str, Callable[[Sequence[torch.Size], int, int], Hook]] = {
    "none": lambda shapes, bits, seed: exact_hook,
    "fp16": lambda shapes, bits, seed: cast_hook(default_hooks.fp16_compress_hook, 2),
    "bf16": lambda shapes, bits, seed: cast_hook(default_hooks.bf16_compress_hook, 2),
    "powersgd": lambda shapes, bits, seed: PowerSgd(shapes, seed),
    "dither": lambda shapes, bits, seed: Dither(shapes, bits, seed),
}
