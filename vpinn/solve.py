"""One solve, end to end: problem file -> trained network -> errors, fields, plots, summary.

Writes into the output directory (``results/<name>`` by default):
``summary.json``, ``history.csv``, ``loss.png``, ``error.png``, ``solution.png``,
``solution.vtu`` (and ``solution.xdmf`` if asked), ``profile.csv`` and ``profile.png`` where the
domain has a profile line (the hollow sphere's radius), ``problem.toml`` (a copy of the input)
and ``checkpoint.pt``.  Every file is written atomically.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from vpinn.atomic import write_text
from vpinn.budget import fit_batch
from vpinn.device import choose_device, peak_memory_bytes
from vpinn.errors import SpecError, TrainingDiverged
from vpinn.evaluate import energy, relative_errors
from vpinn.export import (PROFILE_POINTS, evaluate_fields, grid_points, plot_errors, plot_loss, plot_slice, write_csv,
                          write_grid, write_json, write_profile)
from vpinn.problem import in_file, load_problem
from vpinn.setup import Setup, build_setup
from vpinn.train import Trainer, TrainResult
from vpinn.train.checkpoint import load_checkpoint


@dataclass(frozen=True)
class SolveOptions:
    """Command-line choices that override or complement the problem file."""

    resume: bool = False
    max_time: float | None = None
    device: str | None = None
    output: str | None = None
    progress: bool = True
    overrides: dict = field(default_factory=dict)


def solve(problem_path: str | Path, options: SolveOptions = SolveOptions(), echo: Callable[[str], None] = print) -> dict:
    """Solve the problem in ``problem_path``; returns the summary (also written as JSON)."""
    started = time.perf_counter()
    overrides = dict(options.overrides)
    spec = load_problem(problem_path, overrides)
    device = choose_device(options.device)
    out = spec.output_path(options.output)
    calibration = {}
    if spec.train.memory_limit and options.resume:  # the sizes the run began with, not a new fit
        overrides.update(load_checkpoint(out / "checkpoint.pt")["sizes"])
        spec = load_problem(problem_path, overrides)
    elif spec.train.memory_limit:
        estimate = fit_batch(str(problem_path), spec, overrides, str(device))
        overrides.update({"train.batch": estimate.batch, "train.chunk": estimate.chunk})
        spec = load_problem(problem_path, overrides)
        echo(f"train.memory_limit = {spec.train.memory_limit}: batch {estimate.batch:,}, chunk {estimate.chunk:,} "
             f"(calibrated {estimate.per_point / 1024:.2f} KiB per point + {estimate.fixed / 2**20:.0f} MiB fixed)")
        calibration = {"memory_limit_bytes": spec.train.memory_limit_bytes,
                       "calibrated_bytes_per_point": estimate.per_point, "calibrated_fixed_bytes": estimate.fixed}
    text = Path(problem_path).read_text(encoding="utf-8")
    try:
        setup = build_setup(spec, device)
    except SpecError as err:  # a check that needs the built domain or physics
        raise in_file(err, str(problem_path), text) from None
    out.mkdir(parents=True, exist_ok=True)
    settings = "".join(f"# run with --set {key}={value!r}\n" for key, value in options.overrides.items())
    write_text(out / "problem.toml", settings + text)
    trainer = Trainer(setup, out / "checkpoint.pt", max_time=options.max_time, progress=options.progress)
    if options.resume:
        trainer.resume(out / "checkpoint.pt")
        echo(f"resuming {spec.name} at {trainer.phase} step {trainer.step + trainer.iteration}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    echo(f"{spec.name}: {setup.physics.terms[0].rule.size:,} quadrature points, batch {spec.train.batch:,}, "
         f"{sum(p.numel() for p in setup.field.parameters()):,} parameters, {device}, {spec.train.dtype}")
    try:
        result = trainer.run()
    except TrainingDiverged:
        write_csv(out / "history.csv", trainer.history)
        raise
    write_csv(out / "history.csv", result.history)
    if result.status == "interrupted":
        echo(f"interrupted at step {result.steps + result.iterations}: checkpoint saved to {out / 'checkpoint.pt'}; "
             f"continue with --resume")
        return {"status": "interrupted"}
    summary = _finish(setup, result, out, started, options.overrides, calibration)
    echo(_one_line(summary, out))
    return summary


def _finish(setup: Setup, result: TrainResult, out: Path, started: float, overrides: dict, extra: dict) -> dict:
    """Evaluate, export fields and plots, and write the summary (with ``extra`` entries)."""
    spec, physics = setup.spec, setup.physics
    chunk, device, dtype = spec.train.chunk, setup.device, setup.dtype
    errors = relative_errors(physics, setup.evaluation_rule, chunk, device, dtype) if physics.exact else {}
    exact_energy = energy(physics, physics.exact, setup.evaluation_rule, chunk, device, dtype) if physics.exact else None
    shape = spec.output.grid
    points = grid_points(setup.domain.volume_map(), shape)
    fields = evaluate_fields(physics, points, chunk, device, dtype)
    for file_format in spec.output.formats:
        write_grid(out / f"solution.{file_format}", points, shape, fields, file_format)
    plot_loss(out / "loss.png", result.history, exact_energy)
    plot_errors(out / "error.png", result.history)
    plot_slice(out / "solution.png", points, fields, shape, physics.primary)
    write_profile(out, physics, setup.domain.profile(PROFILE_POINTS), device, dtype)
    summary = {
        "problem": spec.name,
        "status": result.status,
        **errors,
        "exact_energy": exact_energy,
        "adam_steps": result.steps,
        "lbfgs_iterations": result.iterations,
        "train_seconds": round(result.seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "quadrature_points": setup.physics.terms[0].rule.size,
        "batch": spec.train.batch,
        "evaluation_points": setup.evaluation_rule.size,
        "parameters": sum(p.numel() for p in setup.field.parameters()),
        "derivatives": spec.model.derivatives,
        "peak_memory_bytes": peak_memory_bytes(device),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS (VmHWM)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seed": spec.train.seed,
        "overrides": overrides,
        **extra,
    }
    write_json(out / "summary.json", summary)
    return summary


def _one_line(summary: dict, out: Path) -> str:
    errors = ""
    if "rel_l2" in summary:
        errors = (f"relative L2 error {summary['rel_l2']:.3e}, H1-seminorm error {summary['rel_h1']:.3e}, "
                  f"energy-norm error {summary['rel_energy']:.3e}; ")
    return (f"{summary['problem']}: {errors}{summary['adam_steps']} Adam steps + {summary['lbfgs_iterations']} "
            f"L-BFGS iterations in {summary['train_seconds']:.1f} s ({summary['status']}) on {summary['device']}; "
            f"results in {out}/")
