"""``run.py batches``: what each batch size (and sampler) buys under one wall-time budget.

Each setting, a batch size (or ``auto``) times a sampler, trains the problem file's minibatch
(Adam) phases in a fresh process under the same ``--max-time``; the table gives, per setting:
the relative L2 error reached, the steps and epochs done, the updates per epoch (N / b), the
seconds to reach ``--target`` (from the evaluated history rows; blank if never), the time per
step, the peak memory, and the gradient noise: the trace of the gradient covariance at the
initial network (the same network for every setting), measured in this process from
``--repeats`` independent batches of b points (after the adaptive samplers' warm-up draws) (the noise a batch adds, which falls as 1/b), and
the noise scale B over the run (median of the training diagnostics).  The log-log slope of the
initial trace against b over the fixed batches is printed (-1 for independent points), and so is
the step's overhead in points, ``c0 / c1`` of the least-squares fit ``s/step = c0 + c1 b`` over
the fixed batches: the ``train.step_overhead`` of ``batch = "auto"`` on this machine.

With ``--epochs E`` every fixed batch b trains ``E N / b`` steps (equal work: the same number of
points for every setting; the learning-rate schedule spans them), the fair comparison of a small
batch's many cheap updates with a large batch's few accurate ones.

Writes ``batches.csv``, ``batches.md``, ``batches.png`` (error against time) and ``noise.png``
(gradient-noise trace against b) under ``results/<name>/batches/``; each run's own results stay
in ``batches/<setting>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
from pathlib import Path

import numpy as np

import torch

from vpinn.assemble import assemble
from vpinn.commands.arguments import add_common_arguments, device_name, parse_sizes, positive_count, positive_seconds
from vpinn.commands.subruns import load_with_exact, run_solve
from vpinn.errors import VpinnError
from vpinn.export.plots import plot_error_against_time, plot_noise_against_batch
from vpinn.export.tables import write_csv, write_markdown
from vpinn.measurement.variance import gradient_noise
from vpinn.problem import load_problem
from vpinn.problem.spec import AdamPhase
from vpinn.sampling import SAMPLINGS, make_sampler
from vpinn.train.batching import fit

DESCRIPTION = __doc__
COLUMNS = [("setting", "setting", ""), ("rel_l2", "rel. L2", ".3e"), ("steps", "steps", ","), ("epochs", "epochs", ".2f"),
           ("updates_per_epoch", "updates/epoch", ",.0f"), ("final_batch", "final b", ","),
           ("seconds_to_target", "s to target", ".1f"), ("seconds_per_step", "s/step", ".4f"),
           ("initial_trace", "tr Cov(g) at init", ".3e"), ("noise_scale", "B (median)", ".3g"), ("peak_MiB", "peak MiB", ".0f")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--batch", default="1024,4096,16384,auto", help="batch sizes, comma-separated, 'auto' allowed "
                        "(default: 1024,4096,16384,auto)")
    parser.add_argument("--sampling", help=f"samplers, comma-separated, of {', '.join(SAMPLINGS)} and stratified-neyman "
                        "(default: train.sampling)")
    parser.add_argument("--max-time", type=positive_seconds, metavar="SECONDS",
                        help="wall-clock budget of each setting's training (default: train.max_time, else 120)")
    parser.add_argument("--target", type=float, default=1e-3, help="relative L2 error to time (default 1e-3)")
    parser.add_argument("--epochs", type=float, help="equal work: each fixed batch b trains epochs * N / b Adam steps "
                        "(one phase; 'auto' keeps the file's steps); default: the file's steps, cut by --max-time")
    parser.add_argument("--repeats", type=positive_count, default=32,
                        help="batches per size for the initial gradient-noise trace (default 32)")


def _batches(text: str) -> list[int | str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    return ["auto" if item == "auto" else parse_sizes(item, "--batch")[0] for item in items]


#: ``--sampling`` names beyond ``train.sampling``'s: stratified with Neyman allocation
VARIANTS = {"stratified-neyman": {"train.sampling": "stratified", "train.allocation": "neyman"}}


def _samplings(text: str | None, default: str) -> list[str]:
    names = [n.strip() for n in (text or default).split(",") if n.strip()]
    for name in names:
        if name not in SAMPLINGS and name not in VARIANTS:
            raise VpinnError(f"--sampling: unknown sampler {name!r} (choose from {', '.join([*SAMPLINGS, *VARIANTS])})")
    return names


def _sampling_settings(name: str) -> dict:
    return VARIANTS.get(name, {"train.sampling": name})


def _row(label: str, result: dict, rule_size: int, target: float) -> dict:
    summary, history = result["summary"], result["history"]
    steps = sum(summary["steps"].values())
    noise = [float(r["noise_scale"]) for r in history if r.get("noise_scale")]
    reached = [t for t, error in result["curve"] if error <= target]
    final_batch = summary.get("final_batch") or summary["batch"]
    return {"setting": label, "rel_l2": summary.get("rel_l2"), "steps": steps,
            "epochs": float(history[-1]["epoch"]) if history else 0.0, "updates_per_epoch": rule_size / final_batch,
            "final_batch": final_batch, "seconds_to_target": reached[0] if reached else None,
            "seconds_per_step": summary["train_seconds"] / max(steps, 1),
            "noise_scale": statistics.median(noise) if noise else None, "peak_MiB": summary["peak_memory_bytes"] / 2**20}


def initial_traces(spec, device: torch.device, batches: list[int | str], sampling: str, repeats: int) -> dict[int, float]:
    """``tr Cov(g)`` of the volume term's gradient at the initial network, per fixed batch size."""
    assembly = assemble(spec, device)
    term, train = assembly.terms[0], spec.train
    traces = {}
    for batch in (b for b in batches if b != "auto"):
        sampler = make_sampler(sampling, term.rule, device, train.seed + 1, strata=train.strata or max(1, batch // 4),
                               allocation=train.allocation, refresh_every=train.refresh_every, mix=train.uniform_mix)
        adaptive = sampling == "importance" or (sampling == "stratified" and train.allocation == "neyman")
        traces[batch] = gradient_noise(term, sampler, assembly.trial, list(assembly.field.parameters()), assembly.dtype,
                                       fit(batch, sampler), repeats, 5 * train.refresh_every if adaptive else 0).trace
    return traces


def noise_slope(rows: list[dict]) -> float | None:
    """The log-log slope of the initial gradient-noise trace against the batch over the fixed batches."""
    pairs = [(r["batch"], r["initial_trace"]) for r in rows if isinstance(r["batch"], int) and r["initial_trace"]]
    if len({b for b, _ in pairs}) < 2:
        return None
    x, y = np.log([b for b, _ in pairs]), np.log([t for _, t in pairs])
    return float(np.polyfit(x, y, 1)[0])


def step_overhead(rows: list[dict]) -> float | None:
    """``c0 / c1`` (points) of the least-squares line ``seconds per step = c0 + c1 b`` over the
    fixed batches, or None with fewer than two sizes or a line that does not rise with b."""
    pairs = [(r["batch"], r["seconds_per_step"]) for r in rows if isinstance(r["batch"], int)]
    if len({b for b, _ in pairs}) < 2:
        return None
    slope, intercept = np.polyfit([b for b, _ in pairs], [t for _, t in pairs], 1)
    return float(intercept / slope) if slope > 0 else None


def run(args: argparse.Namespace) -> int:
    problem, settings, spec = load_with_exact(args, "batches")
    phases = [dataclasses.asdict(p) for p in spec.train.phases if isinstance(p, AdamPhase)]
    if not phases:
        raise VpinnError(f"batches: {spec.name} has no Adam (minibatch) phase to compare batch sizes with")
    # the Adam phases alone: the file's [[train.phase]] list without the others, or the short form without L-BFGS
    adam_only = {"train.phase": phases} if spec.train.phase else {"train.lbfgs.iterations": 0}
    budget = args.max_time or spec.train.max_time or 120.0
    out = Path(args.out) if args.out else spec.output_path() / "batches"
    batches, samplings = _batches(args.batch), _samplings(args.sampling, spec.train.sampling)
    for batch in batches:  # every setting checked before any run
        load_problem(problem, {**settings, "train.batch": batch})
    rule_size = assemble(spec, torch.device("cpu")).terms[0].rule.size
    print(f"{spec.name}: {len(batches) * len(samplings)} settings, {budget:g} s of Adam each, each in a fresh process")
    rows, curves, device = [], {}, torch.device(device_name(args.device))
    for sampling in samplings:
        chosen = load_problem(problem, {**settings, **_sampling_settings(sampling)})
        traces = initial_traces(chosen, device, batches, chosen.train.sampling, args.repeats)
        for batch in batches:
            label = f"b={batch:,}" if batch != "auto" else "b=auto"
            label += f" {sampling}" if len(samplings) > 1 else ""
            overrides = {**settings, **adam_only, "train.batch": batch, **_sampling_settings(sampling)}
            if args.epochs and batch != "auto":
                steps = math.ceil(args.epochs * rule_size / batch)
                overrides.update({"train.phase": [{**phases[0], "steps": steps}]} if spec.train.phase else {"train.steps": steps})
            result = run_solve(problem, overrides, out / label.replace("=", "").replace(" ", "_").replace(",", ""), budget, args.device)
            row = {**_row(label, result, rule_size, args.target), "batch": batch, "sampling": sampling,
                   "initial_trace": traces.get(batch)}
            rows.append(row)
            curves[label] = result["curve"]
            print(f"  {label:>22}: relative L2 {row['rel_l2']:.3e} after {row['steps']:,} steps "
                  f"({row['epochs']:.2f} epochs, {row['seconds_per_step'] * 1e3:.1f} ms/step), final b {row['final_batch']:,}, "
                  f"peak {row['peak_MiB']:.0f} MiB", flush=True)
    slope, overhead = noise_slope(rows), step_overhead(rows)
    write_csv(out / "batches.csv", rows)
    write_markdown(out / "batches.md", rows, COLUMNS)
    plot_error_against_time(out / "batches.png", curves, f"{spec.name}: relative L2 error, {budget:g} s per setting")
    plot_noise_against_batch(out / "noise.png", rows, slope)
    if slope is not None:
        print(f"gradient-noise trace at initialisation against b: log-log slope {slope:.3f} (independent points: -1)")
    if overhead is not None:
        print(f"seconds per step against b: overhead c0/c1 = {overhead:,.0f} points (train.step_overhead)")
    print(f"table and plots written to {out}/batches.md, batches.csv, batches.png and noise.png")
    return 0
