"""``run.py memory``: peak memory and speed across batch sizes b and quadrature sizes N.

For every (N, b) a few real training steps of the problem's own model and loss run in a fresh
process (CPU) and report: peak memory, memory above the process's idle baseline, bytes per
point, time per step and points per second.  One more row computes the exact gradient of a
whole rule of ``--full-points`` points, accumulated over chunks of ``--chunk`` points: its memory
is that of one chunk.

How memory is measured: on CUDA, torch.cuda.max_memory_allocated after
reset_peak_memory_stats, minus the tensors allocated before the first step (live tensor bytes).
On CPU, each case runs in a fresh Python process: peak resident set size (VmHWM from
/proc/self/status, or ru_maxrss) minus that process's resident size just before the first step.

The rule's size is set by its cell count (Gauss: cells^3 * order^3 points, nearest to the asked
N), point count (Sobol) or refinement level (simplex rules on a mesh: 8 times the points a level).  Results: results/<name>/memory/memory.{csv,md,png}.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from vpinn.commands.arguments import add_common_arguments, default_problem, device_name, parse_sizes, positive_count
from vpinn.export.plots import plot_memory
from vpinn.export.tables import write_csv, write_markdown
from vpinn.measurement.engine import measure
from vpinn.problem import ProblemSpec, load_problem
from vpinn.quadrature.simplex import tetrahedron_table

DESCRIPTION = __doc__
COLUMNS = [
    ("kind", "kind", ""), ("points", "N", ","), ("batch", "b (chunk)", ","), ("allocator", "allocator", ""),
    ("peak_MiB", "peak MiB", ".1f"), ("above_baseline_MiB", "above baseline MiB", ".1f"),
    ("bytes_per_point", "bytes/point", ",.0f"), ("ms_per_step", "ms/step", ",.1f"), ("points_per_s", "points/s", ",.0f"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--batch", default="1e3,1e4,1e5", help="batch sizes b (default: 1e3,1e4,1e5)")
    parser.add_argument("--points", default="1e5,1e6,1e7,1e8", help="quadrature sizes N (default: 1e5,1e6,1e7,1e8)")
    parser.add_argument("--full-points", default="1e6", help="N of the exact full-gradient row (default: 1e6; 0: none)")
    parser.add_argument("--chunk", type=positive_count, help="chunk size of the full gradient (default: train.chunk)")
    parser.add_argument("--steps", type=positive_count, default=5, help="timed steps per case (default: 5)")
    parser.add_argument("--allocator", choices=("tuned", "default", "both"), default="tuned",
                        help="CPU: glibc settings that keep freed memory for reuse (tuned, as solve uses), "
                             "glibc's default, or both for a comparison (default: tuned)")


def rule_size(spec: ProblemSpec, points: int) -> tuple[dict, int]:
    """Overrides giving the training rule about ``points`` points, and the exact count."""
    quadrature = spec.quadrature
    if quadrature.rule == "sobol":
        return {"quadrature.points": points}, points
    if quadrature.rule == "simplex":  # a mesh: refinement levels, 8 times the points each
        per_level = len(spec.domain.mesh().tetrahedra) * len(tetrahedron_table(quadrature.order)[1])
        refine = min(5, max(0, round(math.log(max(points / per_level, 1.0), 8))))
        return {"quadrature.refine": refine}, per_level * 8**refine
    per_cell = quadrature.order**3
    cells = max(1, round((points / per_cell) ** (1 / 3)))
    return {"quadrature.cells": [cells] * 3}, cells**3 * per_cell


def run(args: argparse.Namespace) -> int:
    problem = args.problem or default_problem()
    settings = dict(args.settings)
    spec = load_problem(problem, settings)
    device = device_name(args.device)
    batches, sizes = parse_sizes(args.batch, "--batch"), parse_sizes(args.points, "--points")
    full = [] if args.full_points.strip() in ("0", "") else parse_sizes(args.full_points, "--full-points")
    chunk = args.chunk or spec.train.chunk
    allocators = ["tuned", "default"] if args.allocator == "both" else [args.allocator]
    cases = [("step", n, b, a) for n in sizes for b in batches for a in allocators]
    cases += [("full", n, chunk, a) for n in full for a in allocators]
    print(f"{spec.name}: memory on {device}, {len(cases)} cases, each in a fresh process" if device == "cpu"
          else f"{spec.name}: memory on {device}, {len(cases)} cases")
    rows = []
    for number, (kind, points, batch, allocator) in enumerate(cases, start=1):
        overrides, exact_points = rule_size(spec, points)
        case = {"problem": problem, "overrides": {**settings, **overrides, "train.batch": batch}, "device": device,
                "kind": kind, "steps": args.steps, "min_seconds": 0.0, "chunk": chunk,
                "tune_allocator": allocator == "tuned"}
        result = measure(case)
        row = {"kind": "minibatch step" if kind == "step" else "full gradient", "points": exact_points, "batch": batch,
               "allocator": allocator, "peak_MiB": result["peak_bytes"] / 2**20,
               "above_baseline_MiB": result["above_baseline_bytes"] / 2**20, "bytes_per_point": result["bytes_per_point"],
               "ms_per_step": 1e3 * result["seconds"], "points_per_s": result["points_per_second"], "device": device}
        rows.append(row)
        print(f"[{number:>2}/{len(cases)}] {row['kind']:>14}  N={exact_points:>13,}  b={batch:>9,}  {allocator:>7}  "
              f"peak {row['peak_MiB']:9.1f} MiB  +{row['above_baseline_MiB']:8.1f} MiB  "
              f"{row['bytes_per_point']:8,.0f} B/point  {row['ms_per_step']:10,.1f} ms  {row['points_per_s']:12,.0f} points/s",
              flush=True)
    out = Path(args.out) if args.out else spec.output_path() / "memory"
    write_csv(out / "memory.csv", rows)
    write_markdown(out / "memory.md", rows, COLUMNS)
    plot_memory(out / "memory.png", rows)
    for line in checks(rows):
        print(line)
    print(f"table and plot written to {out}/memory.md, memory.csv and memory.png")
    return 0


def checks(rows: list[dict]) -> list[str]:
    """The promises, read off the table: memory flat in N, linear in b."""
    steps = [r for r in rows if r["kind"] == "minibatch step" and r["allocator"] == rows[0]["allocator"]]
    lines = []
    for batch in sorted({r["batch"] for r in steps}):
        same_b = sorted((r for r in steps if r["batch"] == batch), key=lambda r: r["points"])
        if len(same_b) > 1:
            low, high = same_b[0], same_b[-1]
            change = high["above_baseline_MiB"] / low["above_baseline_MiB"] - 1
            lines.append(f"flat in N: at b = {batch:,}, N = {high['points']:,} uses {change:+.1%} memory above "
                         f"baseline compared with N = {low['points']:,}")
    for points in sorted({r["points"] for r in steps}):
        large = sorted((r for r in steps if r["points"] == points and r["batch"] >= 10_000), key=lambda r: r["batch"])
        if len(large) > 1:
            slope = np.polyfit(np.log([r["batch"] for r in large]), np.log([r["above_baseline_MiB"] for r in large]), 1)[0]
            lines.append(f"linear in b: at N = {points:,}, log-log slope of memory vs b (b >= 1e4) = {slope:.2f}")
    if steps:
        largest = max(steps, key=lambda r: (r["batch"], -r["points"]))
        lines.append(f"bytes per point at b = {largest['batch']:,}: {largest['bytes_per_point']:,.0f} "
                     f"({largest['bytes_per_point'] / 1024:.2f} KiB)")
    return lines
