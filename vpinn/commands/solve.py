"""``run.py solve``: problem file -> trained network -> errors, fields, plots, summary.

Writes into the output directory (``results/<name>`` by default):
``summary.json``, ``history.csv``, ``loss.png``, ``error.png``, ``solution.png``,
``solution.vtu`` (and ``solution.xdmf`` if asked), ``profile.csv`` and ``profile.png`` where the
domain has a profile line (the hollow sphere's radius), ``problem.toml`` (a copy of the input)
and ``checkpoint.pt``.  Every file is written atomically.  The problem file is read once.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from vpinn.assemble import Assembly, assemble, build_trainer, fingerprint
from vpinn.atomic import write_text
from vpinn.commands.arguments import add_common_arguments, default_problem, device_name, positive_seconds
from vpinn.commands.terminal import TerminalObserver
from vpinn.errors import TrainingDiverged, VpinnError
from vpinn.evaluate import energy, relative_errors
from vpinn.export import (PROFILE_POINTS, evaluate_fields, plot_errors, plot_loss, plot_slice, solution_cells, write_csv,
                          write_fields, write_json, write_profile)
from vpinn.measurement.budget import fit_batch
from vpinn.measurement.memory import keep_freed_memory, peak_memory_bytes
from vpinn.physics.base import on_volume_rule
from vpinn.problem import ProblemSpec, load_problem
from vpinn.train import TrainResult
from vpinn.train.checkpoint import CheckpointError, check_fingerprint, load_checkpoint, save_checkpoint

DESCRIPTION = "Train the problem and write summary.json, history.csv, plots, solution.vtu and a checkpoint to results/<name>/."


@dataclass(frozen=True)
class SolveOptions:
    """Command-line choices that override or complement the problem file."""

    resume: bool = False
    max_time: float | None = None
    device: str | None = None
    output: str | None = None
    progress: bool = True
    overrides: dict = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output directory")
    parser.add_argument("--max-time", type=positive_seconds, metavar="SECONDS",
                        help="wall-clock budget for training (overrides train.max_time)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    keep_freed_memory()
    options = SolveOptions(args.resume, args.max_time, args.device, args.out, not args.quiet, dict(args.settings))
    summary = solve(args.problem or default_problem(), options)
    return 130 if summary.get("status") == "interrupted" else 0


def _with_sizes(spec: ProblemSpec, batch: int, chunk: int) -> ProblemSpec:
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, batch=batch, chunk=chunk))


def _resume_state(path: Path, spec: ProblemSpec) -> dict:
    """The checkpoint to resume, refused (one line naming the flag) if missing or of another problem."""
    try:
        state = load_checkpoint(path)
        check_fingerprint(state, fingerprint(spec), path)
    except CheckpointError as err:
        raise VpinnError(f"--resume: {err}") from None
    return state


def solve(problem_path: str | Path, options: SolveOptions = SolveOptions(), echo: Callable[[str], None] = print) -> dict:
    """Solve the problem in ``problem_path``; returns the summary (also written as JSON)."""
    started = time.perf_counter()
    spec = load_problem(problem_path, options.overrides)
    device = torch.device(device_name(options.device))
    out = spec.output_path(options.output)
    state = _resume_state(out / "checkpoint.pt", spec) if options.resume else None
    calibration = {}
    if state is not None and spec.train.memory_limit:  # the sizes the run began with, not a new fit
        spec = _with_sizes(spec, state["sizes"]["batch"], state["sizes"]["chunk"])
    elif spec.train.memory_limit:
        estimate = fit_batch(str(problem_path), spec, options.overrides, str(device))
        spec = _with_sizes(spec, estimate.batch, estimate.chunk)
        echo(f"train.memory_limit = {spec.train.memory_limit}: batch {estimate.batch:,}, chunk {estimate.chunk:,} "
             f"(calibrated {estimate.per_point / 1024:.2f} KiB per point + {estimate.fixed / 2**20:.0f} MiB fixed)")
        calibration = {"memory_limit_bytes": spec.train.memory_limit_bytes,
                       "calibrated_bytes_per_point": estimate.per_point, "calibrated_fixed_bytes": estimate.fixed}
    assembly = assemble(spec, device)
    out.mkdir(parents=True, exist_ok=True)
    settings = "".join(f"# run with --set {key}={value!r}\n" for key, value in options.overrides.items())
    write_text(out / "problem.toml", settings + Path(problem_path).read_text(encoding="utf-8"))
    extra = {"fingerprint": fingerprint(spec), "sizes": {"batch": spec.train.batch, "chunk": spec.train.chunk},
             "problem_file": str(Path(problem_path).resolve()),  # vpinn.load resolves mesh files against it
             "overrides": dict(options.overrides)}
    with TerminalObserver(options.progress) as observer:
        trainer = build_trainer(spec, assembly, save=lambda s: save_checkpoint(out / "checkpoint.pt", {**s, **extra}),
                                max_time=options.max_time, observer=observer)
        if state is not None:
            trainer.load_state_dict(state)
            phase = trainer.phases[trainer.current]
            echo(f"resuming {spec.name} at {phase.name} step {trainer.done[trainer.current]} ({trainer.step} steps in all)")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        echo(f"{spec.name}: {assembly.terms[0].rule.size:,} quadrature points, batch {spec.train.batch:,}, "
             f"{sum(p.numel() for p in assembly.field.parameters()):,} parameters, {device}, "
             f"phases {' + '.join(f'{p.optimizer} ({p.dtype})' for p in spec.train.phases)}")
        try:
            result = trainer.run()
        except TrainingDiverged:
            write_csv(out / "history.csv", trainer.history)
            raise
    write_csv(out / "history.csv", result.history)
    if result.status == "interrupted":
        echo(f"interrupted at step {trainer.step}: checkpoint saved to {out / 'checkpoint.pt'}; continue with --resume")
        return {"status": "interrupted"}
    summary = _finish(spec, assembly, result, trainer.dtype, out, started, options.overrides, calibration)
    echo(_one_line(summary, out))
    return summary


def _finish(spec: ProblemSpec, assembly: Assembly, result: TrainResult, dtype: torch.dtype, out: Path, started: float,
            overrides: dict, extra: dict) -> dict:
    """Evaluate, export fields and plots, and write the summary (with ``extra`` entries)."""
    physics, trial, device, chunk = assembly.physics, assembly.trial, assembly.device, assembly.chunk
    rule = assembly.evaluation_rule
    errors = relative_errors(physics, trial, rule, chunk, device, dtype) if physics.exact else {}
    exact_energy = energy(on_volume_rule(assembly.terms, rule), physics.exact, chunk, device, dtype) if physics.exact else None
    shape = spec.output.grid
    points, cells = solution_cells(assembly.domain, shape)
    fields = evaluate_fields(physics, trial, points, chunk, device, dtype)
    for file_format in spec.output.formats:
        write_fields(out / f"solution.{file_format}", points, cells, fields, file_format)
    plot_loss(out / "loss.png", result.history, exact_energy)
    plot_errors(out / "error.png", result.history)
    if cells[0][0] == "hexahedron":  # a slice of the grid; a mesh has no grid to slice
        plot_slice(out / "solution.png", points, fields, shape, physics.primary)
    write_profile(out, physics, trial, assembly.domain.profile(PROFILE_POINTS), device, dtype)
    summary = {
        "problem": spec.name,
        "status": result.status,
        **errors,
        "exact_energy": exact_energy,
        "steps": result.steps,
        "phase_seconds": [round(t, 3) for t in result.phase_seconds],
        "train_seconds": round(result.seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "quadrature_points": assembly.terms[0].rule.size,
        "batch": spec.train.batch,
        "evaluation_points": rule.size,
        "parameters": sum(p.numel() for p in assembly.field.parameters()),
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
    steps = " + ".join(f"{count} {name}" for name, count in summary["steps"].items() if count)
    return (f"{summary['problem']}: {errors}{steps or 'no'} steps in {summary['train_seconds']:.1f} s "
            f"({summary['status']}) on {summary['device']}; results in {out}/")
