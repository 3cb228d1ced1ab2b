"""Measure training work: time and peak memory of minibatch steps or of one exact full gradient.

Memory is measured so that the figures can be trusted (README, "Memory measurement"):

* CUDA: ``torch.cuda.reset_peak_memory_stats``, then ``max_memory_allocated`` minus the memory
  allocated just before the first step: the live tensors of the work itself.
* CPU: each case runs in a fresh Python process (:func:`measure`), which reports its peak
  resident set size (``VmHWM``) minus its resident size just before the first step; a fresh
  process keeps one case's freed-but-cached memory out of the next case's figure.

``python -m vpinn.measurement.engine '<json>'`` runs one case and prints one JSON object.
"""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from typing import Callable

import torch

from vpinn.assemble import Assembly, assemble, build_trainer
from vpinn.devices import choose_device, synchronize
from vpinn.errors import VpinnError
from vpinn.measurement.memory import current_resident_bytes, keep_freed_memory, peak_memory_bytes, release_free_memory
from vpinn.problem import ProblemSpec, load_problem
from vpinn.train import full_loss_backward


def training_step(spec: ProblemSpec, assembly: Assembly) -> Callable[[], object]:
    """One training step of the problem's first phase (the Adam warm start of the bundled
    problems: a minibatch step), as a function."""
    return build_trainer(spec, assembly).phases[0].optimizer.step


def _time_steps(step: Callable[[], object], device: torch.device, steps: int, min_seconds: float) -> list[float]:
    """Seconds per training step, after 3 untimed steps: ``steps`` of them, stopping early after 5
    once ``min_seconds`` have passed."""
    for _ in range(3):
        step()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < steps and (len(times) < min(5, steps) or time.perf_counter() - started < min_seconds):
        synchronize(device)
        tick = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - tick)
    return times


def _time_full_gradient(assembly: Assembly, chunk: int) -> list[float]:
    """Seconds for one exact gradient of the whole training rule, accumulated over chunks."""
    tick = time.perf_counter()
    full_loss_backward(assembly.terms, assembly.trial, chunk, assembly.device, assembly.dtype)
    synchronize(assembly.device)
    return [time.perf_counter() - tick]


def _warm_up(spec: ProblemSpec, device: torch.device) -> None:
    """Two steps at a tiny batch, so that one-off allocations (thread pools, BLAS buffers, the
    autograd engine) happen before the baseline is read and do not count as the case's memory."""
    tiny = replace(spec, train=replace(spec.train, batch=64, boundary_batch=64))
    step = training_step(tiny, assemble(tiny, device))
    for _ in range(2):
        step()


def measure_training(problem: str, overrides: dict, device: str | None, kind: str = "step", steps: int = 20,
                     min_seconds: float = 2.0, chunk: int = 65536, tune_allocator: bool = True) -> dict:
    """Measure ``kind`` ("step": minibatch training steps; "full": one full gradient in chunks of
    ``chunk`` points) for ``problem`` with ``overrides``, in this process."""
    allocator = keep_freed_memory() if tune_allocator else False
    spec = load_problem(problem, overrides)
    compute = choose_device(device)
    _warm_up(spec, compute)
    assembly = assemble(spec, compute)
    step = training_step(spec, assembly)
    gc.collect()
    synchronize(compute)
    if compute.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(compute)
        baseline = torch.cuda.memory_allocated(compute)
    else:
        release_free_memory()
        baseline = current_resident_bytes()
    if kind == "step":
        times = _time_steps(step, compute, steps, min_seconds)
        points = sum(term.batch for term in assembly.terms)  # per step
        resident = points
    else:
        times = _time_full_gradient(assembly, chunk)
        points = sum(term.rule.size for term in assembly.terms)
        resident = min(chunk, max(term.rule.size for term in assembly.terms))  # points alive at once
    seconds = statistics.median(times)
    peak = peak_memory_bytes(compute)
    return {
        "kind": kind, "seconds": seconds, "points_per_second": points / seconds, "repeats": len(times),
        "peak_bytes": peak, "baseline_bytes": baseline, "above_baseline_bytes": peak - baseline,
        "bytes_per_point": (peak - baseline) / resident, "quadrature_points": assembly.terms[0].rule.size,
        "batch": resident, "device": str(compute), "allocator_tuned": allocator,
    }


def measure_isolated(case: dict) -> dict:
    """:func:`measure_training` with keyword arguments ``case``, in a fresh Python process."""
    done = subprocess.run([sys.executable, "-m", "vpinn.measurement.engine", json.dumps(case)], capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise VpinnError(f"measurement of {case} failed: {lines[-1] if lines else 'no output'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(case: dict) -> dict:
    """One case: in a fresh process on CPU; in this process on CUDA, whose counters are exact.

    (The glibc allocator settings cannot be undone in a running process, so a CUDA case that
    asks for the untuned allocator runs isolated too.)"""
    if choose_device(case.get("device")).type == "cuda" and case.get("tune_allocator", True):
        result = measure_training(**case)
        gc.collect()
        return result
    return measure_isolated(case)


if __name__ == "__main__":
    try:
        print(json.dumps(measure_training(**json.loads(sys.argv[1]))))
    except VpinnError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
