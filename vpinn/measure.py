"""Measure training steps: time per step and peak memory, each case in a fresh process on CPU.

CPU memory is the process's peak resident set size (``VmHWM``) minus its resident size just
before the first step; a fresh process per case keeps one case's freed-but-cached memory out of
the next one's figure.  On CUDA, ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus the memory allocated before the first step (live tensors).
Run a case directly with ``python -m vpinn.measure '<json>'``; it prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import torch

from vpinn.device import choose_device, current_resident_bytes, keep_freed_memory, peak_memory_bytes, synchronize
from vpinn.errors import VpinnError
from vpinn.problem import load_problem
from vpinn.setup import build_setup
from vpinn.train import Trainer


def measure_training(problem: str, overrides: dict, device: str | None, steps: int = 20,
                     min_seconds: float = 2.0, tune_allocator: bool = True) -> dict:
    """Time ``steps`` training steps (after 3 untimed ones) of ``problem`` with ``overrides``."""
    allocator = keep_freed_memory() if tune_allocator else False
    spec = load_problem(problem, overrides)
    compute = choose_device(device)
    setup = build_setup(spec, compute)
    trainer = Trainer(setup, None, progress=False)
    synchronize(compute)
    if compute.type == "cuda":
        torch.cuda.reset_peak_memory_stats(compute)
        baseline = torch.cuda.memory_allocated(compute)
    else:
        baseline = current_resident_bytes()
    for _ in range(3):
        trainer.training_step()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < steps and (len(times) < 5 or time.perf_counter() - started < min_seconds):
        synchronize(compute)
        tick = time.perf_counter()
        trainer.training_step()
        synchronize(compute)
        times.append(time.perf_counter() - tick)
    points = sum(term.batch for term in setup.physics.terms)
    seconds = statistics.median(times)
    above = peak_memory_bytes(compute) - baseline
    return {
        "seconds_per_step": seconds, "points_per_second": points / seconds, "timed_steps": len(times),
        "peak_bytes": peak_memory_bytes(compute), "baseline_bytes": baseline, "above_baseline_bytes": above,
        "bytes_per_point": above / points, "quadrature_points": setup.physics.terms[0].rule.size,
        "device": str(compute), "allocator_tuned": allocator,
    }


def measure_isolated(case: dict) -> dict:
    """:func:`measure_training` with keyword arguments ``case``, in a fresh Python process."""
    done = subprocess.run([sys.executable, "-m", "vpinn.measure", json.dumps(case)], capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise VpinnError(f"measurement of {case} failed: {lines[-1] if lines else 'no output'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(case: dict) -> dict:
    """One case, isolated in a subprocess on CPU, in this process on CUDA (exact counters there)."""
    if choose_device(case.get("device")).type == "cuda":
        return measure_training(**case)
    return measure_isolated(case)


if __name__ == "__main__":
    try:
        print(json.dumps(measure_training(**json.loads(sys.argv[1]))))
    except VpinnError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
