"""Pick the largest batch that fits a memory budget (``train.memory_limit``).

The memory a training step uses above the idle process is, to a good approximation, affine in
the batch size b: ``M(b) = fixed + b * per_point`` (``run.py memory`` measures a log-log slope
near 1 for b >= 1e4).  Two short calibration runs of the problem's own training step, at
b1 = 2048 and b2 = 16384 (fresh processes on CPU, this process on CUDA; see
:mod:`vpinn.measurement.engine`), give ``per_point = (M2 - M1) / (b2 - b1)`` and ``fixed = M1 - b1 per_point``.
The batch is then ``0.8 (limit - fixed) / per_point``: the 20% margin covers the run-to-run
spread of resident-memory readings (three fits of a 48 MiB budget measured 38.7, 44.6 and
49.5 MiB at nearly the same batch).  The full-rule phases' chunk is capped the
same way, scaled by the ratio of the largest phase dtype's size to the first phase's.
"""

from __future__ import annotations

from dataclasses import dataclass

from vpinn.errors import VpinnError
from vpinn.measurement.engine import measure
from vpinn.problem import ProblemSpec

PROBES = (2048, 16384)
MARGIN = 0.8
_BYTES = {"float32": 4, "float64": 8}


@dataclass(frozen=True)
class BatchEstimate:
    """The calibration's result: bytes per point, fixed bytes, and the chosen batch and chunk."""

    per_point: float
    fixed: float
    batch: int
    chunk: int


def fit_batch(problem: str, spec: ProblemSpec, overrides: dict, device: str) -> BatchEstimate:
    """Calibrate ``problem`` (with ``overrides``) on ``device`` and fit ``spec.train.memory_limit``."""
    limit = spec.train.memory_limit_bytes
    used = []
    for batch in PROBES:
        case = {"problem": problem, "overrides": {**overrides, "train.batch": batch}, "device": device,
                "steps": 2, "min_seconds": 0.0}
        used.append(measure(case)["above_baseline_bytes"])
    per_point = max((used[1] - used[0]) / (PROBES[1] - PROBES[0]), 1.0)
    fixed = max(used[0] - PROBES[0] * per_point, 0.0)
    batch = int(MARGIN * (limit - fixed) / per_point)
    if batch < 1:
        raise VpinnError(f"train.memory_limit = {spec.train.memory_limit!r} is below the fixed cost of a training step "
                         f"({fixed / 2**20:.0f} MiB measured)")
    phases = spec.train.phases
    scale = max(_BYTES[p.dtype] for p in phases) / _BYTES[phases[0].dtype]
    return BatchEstimate(per_point, fixed, batch, max(1, min(spec.train.chunk, int(batch / scale))))
