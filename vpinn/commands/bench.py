"""``run.py bench``: time per training step, throughput and memory across batch sizes.

For every derivative method and batch size b, a few real training steps of the problem's own
model and loss are timed (median, after 3 untimed steps) and their peak memory read: on CUDA
from torch.cuda.max_memory_allocated, on CPU as the peak resident set size of a fresh process
per case minus its size before the first step.  The table is printed and saved as bench.csv
and bench.md under results/<name>/bench/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vpinn.commands.arguments import add_common_arguments, default_problem, device_name, parse_sizes, positive_count
from vpinn.errors import VpinnError
from vpinn.export.tables import write_csv, write_markdown
from vpinn.fields.jacobian import JACOBIAN_METHODS
from vpinn.measurement.engine import measure
from vpinn.problem import load_problem


DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--batch", default="1e3,1e4,1e5", help="batch sizes, comma-separated (default: 1e3,1e4,1e5)")
    parser.add_argument("--methods", default=None,
                        help=f"derivative methods, comma-separated, or 'all' ({', '.join(JACOBIAN_METHODS)}); "
                             "default: the problem's [model] derivatives")
    parser.add_argument("--steps", type=positive_count, default=20, help="timed steps per case, at most (default: 20)")


def run(args: argparse.Namespace) -> int:
    problem = args.problem or default_problem()
    settings = dict(args.settings)
    spec = load_problem(problem, settings)
    methods = list(JACOBIAN_METHODS) if args.methods == "all" else (args.methods or spec.model.derivatives).split(",")
    for method in methods:
        if method not in JACOBIAN_METHODS:
            raise VpinnError(f"--methods: unknown method {method!r} (choose from {', '.join(JACOBIAN_METHODS)}, all)")
    device = device_name(args.device)
    rows = []
    print(f"{spec.name}: width {spec.model.width} x depth {spec.model.depth} {spec.model.activation}, "
          f"{spec.train.dtype}, on {device}; median of up to {args.steps} steps per case")
    for method in methods:
        for batch in parse_sizes(args.batch, "--batch"):
            overrides = {**settings, "model.derivatives": method, "train.batch": batch}
            result = measure({"problem": problem, "overrides": overrides, "device": device, "steps": args.steps})
            row = {"method": method, "batch": batch, "ms_per_step": 1e3 * result["seconds"],
                   "points_per_s": result["points_per_second"], "peak_MiB": result["peak_bytes"] / 2**20,
                   "above_baseline_MiB": result["above_baseline_bytes"] / 2**20,
                   "KiB_per_point": result["bytes_per_point"] / 1024, "steps": result["repeats"], "device": device}
            rows.append(row)
            print(f"  {method:>8}  b={batch:>9,}  {row['ms_per_step']:9.2f} ms/step  {row['points_per_s']:12,.0f} points/s  "
                  f"peak {row['peak_MiB']:8.1f} MiB  (+{row['above_baseline_MiB']:.1f} MiB, {row['KiB_per_point']:.2f} KiB/point)",
                  flush=True)
    out = Path(args.out) if args.out else spec.output_path() / "bench"
    columns = [("method", "method", ""), ("batch", "batch", ","), ("ms_per_step", "ms/step", ".2f"),
               ("points_per_s", "points/s", ",.0f"), ("peak_MiB", "peak MiB", ".1f"),
               ("above_baseline_MiB", "above baseline MiB", ".1f"), ("KiB_per_point", "KiB/point", ".2f")]
    write_csv(out / "bench.csv", rows)
    write_markdown(out / "bench.md", rows, columns)
    print(f"table written to {out}/bench.md and bench.csv")
    return 0
