"""``run.py scale``: data-parallel training across process counts and gradient compressions.

For every number of processes K in ``--nproc`` and every compression in ``--compression`` (one
process sends nothing, so K = 1 runs once, uncompressed) the problem's first phase (Adam) runs
for ``--steps`` steps under ``torchrun --standalone --nproc_per_node=K`` (``run.py solve`` in
fresh processes; the file's later phases are left out) at the file's per-rank batch, so that
the global batch is K times larger.  Every process gets ``--threads`` CPU threads (default: the
machine's cores divided by the largest K), so that K processes use K times the cores of one
(more threads than free cores make OpenMP's threads wait for each other: measured here under
load, one process with 2 threads took 484 ms per step where one with 1 thread took 15 ms).
Each row reports the time per step (from the history's
elapsed times between the first and the last logged step, so start-up and the final
evaluation are left out), the global points per second, the payload bytes each rank handed to
all-reduce in the last logged step, and the relative L2 error after the equal number of
steps.  The table is printed and saved as scale.csv and scale.md under results/<name>/scale/.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from vpinn.commands.arguments import add_common_arguments, default_problem, parse_sizes, positive_count
from vpinn.commands.compare import warm_start
from vpinn.commands.subruns import run_solve
from vpinn.distributed import COMPRESSIONS
from vpinn.errors import VpinnError
from vpinn.export.tables import write_csv, write_markdown
from vpinn.problem import ProblemSpec, load_problem

DESCRIPTION = __doc__

COLUMNS = [("nproc", "processes", ""), ("compression", "compression", ""), ("global_batch", "global batch", ","),
           ("ms_per_step", "ms/step", ".1f"), ("points_per_s", "points/s", ",.0f"),
           ("bytes_per_step", "bytes/step per rank", ","), ("rel_l2", "rel. L2", ".3e"), ("steps", "steps", "")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--nproc", default="1,2", help="numbers of processes, comma-separated (default: 1,2)")
    parser.add_argument("--compression", default="none,fp16,powersgd,dither",
                        help=f"compressions for K > 1, comma-separated ({', '.join(COMPRESSIONS)}; "
                             "default: none,fp16,powersgd,dither)")
    parser.add_argument("--steps", type=positive_count, default=100, help="Adam steps per case (default: 100)")
    parser.add_argument("--threads", type=positive_count,
                        help="CPU threads per process (default: the cores divided by the largest --nproc)")


def first_phase_only(spec: ProblemSpec, steps: int) -> dict:
    """Overrides that run the file's first (Adam) phase alone for ``steps`` steps, evaluating
    only at its end."""
    adam = warm_start(spec)
    if not spec.train.phase:  # the short form: Adam, then [train.lbfgs]
        return {"train.steps": steps, "train.eval_every": steps, "train.lbfgs.iterations": 0, "train.max_time": 0}
    phase = {**dataclasses.asdict(adam), "steps": steps, "eval_every": steps, "time_share": 0.0}
    return {"train.phase": [phase], "train.max_time": 0}


def _seconds_per_step(history: list[dict]) -> float:
    """Seconds per step between the first and the last logged row (start-up and the final
    evaluation left out)."""
    first, last = history[0], history[-1]
    return (float(last["elapsed_s"]) - float(first["elapsed_s"])) / (int(last["step"]) - int(first["step"]))


def run(args: argparse.Namespace) -> int:
    problem = args.problem or default_problem()
    settings = dict(args.settings)
    spec = load_problem(problem, settings)
    counts = parse_sizes(args.nproc, "--nproc")
    compressions = [name.strip() for name in args.compression.split(",") if name.strip()]
    for name in compressions:
        if name not in COMPRESSIONS:
            raise VpinnError(f"--compression: unknown compression {name!r} (choose from {', '.join(COMPRESSIONS)})")
    if args.steps < 20:
        raise VpinnError(f"--steps: at least 20, so that two logged steps time the run, not {args.steps}")
    overrides = {**settings, **first_phase_only(spec, args.steps), "train.log_every": 10}
    out = Path(args.out) if args.out else spec.output_path() / "scale"
    cases = [(k, name) for k in counts for name in (compressions if k > 1 else ["none"])]
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(counts))
    print(f"{spec.name}: {len(cases)} cases of {args.steps} Adam steps under torchrun, per-rank batch as in the file, "
          f"{threads} thread{'s' * (threads > 1)} per process")
    rows = []
    for nproc, name in cases:
        try:
            result = run_solve(problem, {**overrides, "train.compression": name}, out / f"{nproc}_{name}", None,
                               args.device, nproc=nproc, threads=threads)
        except VpinnError as err:
            raise VpinnError(f"scale: {err}") from None
        summary, seconds = result["summary"], _seconds_per_step(result["history"])
        row = {"nproc": nproc, "compression": name, "global_batch": summary["global_batch"],
               "ms_per_step": 1e3 * seconds, "points_per_s": summary["global_batch"] / seconds,
               "bytes_per_step": int(result["history"][-1].get("comm_bytes") or 0),
               "rel_l2": summary.get("rel_l2"), "steps": sum(summary["steps"].values()), "threads": threads,
               "device": summary["device"]}
        rows.append(row)
        print(f"  K={nproc} {name:>9}: {row['ms_per_step']:8.1f} ms/step, {row['points_per_s']:12,.0f} points/s, "
              f"{row['bytes_per_step']:>9,} bytes/step per rank, relative L2 {row['rel_l2']:.3e} after {row['steps']} steps",
              flush=True)
    write_csv(out / "scale.csv", rows)
    write_markdown(out / "scale.md", rows, COLUMNS)
    print(f"table written to {out}/scale.md and scale.csv")
    return 0
