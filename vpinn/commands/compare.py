"""``run.py compare``: optimisers side by side on one problem, each in a fresh process under the
same wall-time budget.

Each setting is a '+'-separated list of optimisers run in turn (``adam+lbfgs``, ``engd``,
``msqn``, ...).  Every setting starts with the problem file's own first Adam phase (the same warm
start for all; so ``adam+lbfgs`` and ``lbfgs`` name the same schedule), then runs its other
optimisers until the budget ends:

* ``adam``   more Adam steps at the first phase's final learning rate;
* ``lbfgs``  L-BFGS on the exact loss of the whole training rule;
* ``engd``   the file's ENGD phase if it has one, else ENGD's defaults;
* ``msqn``   multi-secant quasi-Newton steps on exact gradients of the whole training rule.

The table (final errors, steps, seconds per step of the last phase, peak memory) goes to
``results/<name>/compare/compare.{csv,md}`` and one plot of the relative L2 error against wall
time to ``compare.png``; each run's own results stay in ``compare/<setting>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from vpinn.commands.arguments import add_common_arguments, positive_seconds
from vpinn.commands.subruns import load_with_exact, run_solve
from vpinn.errors import VpinnError
from vpinn.export.plots import plot_error_against_time
from vpinn.export.tables import write_csv, write_markdown
from vpinn.problem import ProblemSpec
from vpinn.problem.spec import AdamPhase

DESCRIPTION = __doc__
COLUMNS = [("setting", "setting", ""), ("rel_l2", "rel. L2", ".3e"), ("rel_h1", "H1-semi", ".3e"),
           ("rel_energy", "energy norm", ".3e"), ("steps", "steps", ""), ("train_seconds", "train s", ".1f"),
           ("seconds_per_step", "s/step (last phase)", ".3f"), ("peak_MiB", "peak MiB", ".0f")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--optimizers", default="adam+lbfgs,engd,msqn",
                        help="settings, comma-separated, each optimisers joined by '+' (default: adam+lbfgs,engd,msqn)")
    parser.add_argument("--max-time", type=positive_seconds, metavar="SECONDS",
                        help="wall-clock budget of each setting's training (default: train.max_time, else 120)")


def warm_start(spec: ProblemSpec) -> AdamPhase:
    first = spec.train.phases[0]
    if not isinstance(first, AdamPhase):
        raise VpinnError(f"compare: {spec.name}'s first training phase is {first.optimizer}, not the Adam warm start")
    return first


def schedule(spec: ProblemSpec, setting: str) -> list[dict]:
    """The phases (as problem-file tables) of one setting; see the module docstring."""
    adam = warm_start(spec)
    start = {**dataclasses.asdict(adam), "time_share": 0.0}
    engd = next((p for p in spec.train.phases if p.optimizer == "engd"), None)
    after = {
        "adam": {**start, "lr": adam.lr_final, "warmup": 0, "decay": "constant"},
        "lbfgs": {"optimizer": "lbfgs", "rule": "training"},
        "engd": {**dataclasses.asdict(engd), "time_share": 0.0} if engd else {"optimizer": "engd"},
        "msqn": {"optimizer": "msqn"},
    }
    phases = [start]
    for name in setting.split("+"):
        if name not in after:
            raise VpinnError(f"--optimizers: unknown optimiser {name!r} in {setting!r} (choose from {', '.join(after)})")
        phases.append({**after[name], "steps": 10**6})
    if setting.split("+")[0] == "adam" and len(phases) > 2:  # "adam+x": the warm start is the Adam part
        phases.pop(1)
    return phases


def run(args: argparse.Namespace) -> int:
    problem, settings, spec = load_with_exact(args, "compare")
    budget = args.max_time or spec.train.max_time or 120.0
    out = Path(args.out) if args.out else spec.output_path() / "compare"
    names = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    plans = {name: schedule(spec, name) for name in names}  # every setting checked before any run
    print(f"{spec.name}: {len(names)} settings, {budget:g} s of training each, each in a fresh process")
    rows, curves = [], {}
    for name, phases in plans.items():
        result = run_solve(problem, {**settings, "train.phase": phases}, out / name.replace("+", "_"), budget, args.device)
        summary = result["summary"]
        last = [p["optimizer"] for p in phases][-1]
        last_steps = list(summary["steps"].values())[-1] or 1
        row = {"setting": name, **{k: summary.get(k) for k in ("rel_l2", "rel_h1", "rel_energy", "train_seconds")},
               "steps": " + ".join(f"{n} {k}" for k, n in summary["steps"].items() if n),
               "seconds_per_step": summary["phase_seconds"][-1] / last_steps,
               "peak_MiB": summary["peak_memory_bytes"] / 2**20, "last_phase": last}
        rows.append(row)
        curves[name] = result["curve"]
        print(f"  {name:>14}: relative L2 {row['rel_l2']:.3e}, energy norm {row['rel_energy']:.3e}, {row['steps']} "
              f"in {row['train_seconds']:.0f} s ({row['seconds_per_step']:.3f} s per {last} step), "
              f"peak {row['peak_MiB']:.0f} MiB", flush=True)
    write_csv(out / "compare.csv", rows)
    write_markdown(out / "compare.md", rows, COLUMNS)
    plot_error_against_time(out / "compare.png", curves, f"{spec.name}: relative L2 error, {budget:g} s per setting")
    print(f"table and plot written to {out}/compare.md, compare.csv and compare.png")
    return 0
