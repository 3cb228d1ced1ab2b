"""``run.py solve``: problem file -> trained network -> errors, fields, plots, summary.

Writes into the output directory (``results/<name>`` by default):
``summary.json``, ``history.csv``, ``loss.png``, ``error.png``, ``solution.png``,
``solution.vtu`` (and ``solution.xdmf`` if asked), ``profile.csv`` and ``profile.png`` where the
domain has a profile line (the hollow sphere's radius), ``problem.toml`` (a copy of the input)
and ``checkpoint.pt``.  Every file is written atomically.  The problem file is read once.

Under ``torchrun`` every rank runs this command: the ranks share each step's batch and every
full-rule sum (:mod:`vpinn.distributed`), and only rank 0 prints, shows progress and writes
files; the checkpoint records the world size and resumes with any number of ranks.
Rank 0's directory belongs to the run while it lasts: locked, refused if it holds another run
(unless ``--resume`` or ``--overwrite``), cleared of stale results (:mod:`vpinn.commands.results`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import platform
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from vpinn.assemble import Assembly, assemble, build_trainer, fingerprint
from vpinn.atomic import write_text
from vpinn.commands.arguments import add_common_arguments, default_problem, device_name, positive_seconds
from vpinn.commands.results import ResultsDirectory
from vpinn.commands.terminal import TerminalObserver
from vpinn.distributed import Group, finish, rank_device, start, world_size
from vpinn.distributed.compensate import calibrate
from vpinn.errors import TrainingDiverged, VpinnError
from vpinn.evaluate import energy, relative_errors
from vpinn.export import (PROFILE_POINTS, evaluate_fields, plot_errors, plot_loss, plot_slice, solution_cells, write_csv,
                          write_fields, write_json, write_profile)
from vpinn.measurement.budget import fit_batch
from vpinn.measurement.memory import keep_freed_memory, peak_memory_bytes, peak_reserved_bytes
from vpinn.physics.base import on_volume_rule
from vpinn.problem import ProblemSpec, load_problem
from vpinn.train import Trainer, TrainResult
from vpinn.train.batching import fit
from vpinn.train.checkpoint import CheckpointError, check_fingerprint, load_checkpoint, save_checkpoint

#: what a checkpoint that cannot be resumed most likely is
DAMAGED = "it is damaged or not from this version of vpinn"

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
    overwrite: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output directory")
    start.add_argument("--overwrite", action="store_true",
                       help="replace an earlier run in the output directory (deletes its checkpoint, history and results)")
    parser.add_argument("--max-time", type=positive_seconds, metavar="SECONDS",
                        help="wall-clock budget for training (overrides train.max_time)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    keep_freed_memory()
    options = SolveOptions(args.resume, args.max_time, args.device, args.out, not args.quiet, dict(args.settings),
                           args.overwrite)
    summary = solve(args.problem or default_problem(), options)
    return 128 + summary["signal"] if summary.get("status") == "interrupted" else 0


def _with_sizes(spec: ProblemSpec, batch: int, chunk: int) -> ProblemSpec:
    """The fitted sizes: the batch (with ``batch = "auto"``: the micro-batch, the most points at once) and the chunk."""
    key = "micro_batch" if spec.train.batch == "auto" else "batch"
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **{key: batch}, chunk=chunk))


def _batch_text(spec: ProblemSpec, assembly) -> str:
    batch, ranks = assembly.terms[0].batch, assembly.group.size
    start = f"{batch:,}" if ranks == 1 else f"{batch:,} per rank x {ranks} ranks = {batch * ranks:,}"
    return f"auto from {start}" if spec.train.batch == "auto" else start + (f" ({spec.train.sampling})" if spec.train.sampling != "uniform" else "")


def _final_batch(trainer) -> int | None:
    """The volume batch of the last minibatch phase at the end of training (None without one)."""
    plans = [p.optimizer.plan for p in trainer.phases if hasattr(p.optimizer, "plan")]
    return plans[-1].batches[0] if plans else None


def _resume_state(path: Path, spec: ProblemSpec) -> dict:
    """The checkpoint to resume, refused (one line naming the flag) if missing or of another problem."""
    try:
        state = load_checkpoint(path)
        check_fingerprint(state, fingerprint(spec), path)
    except CheckpointError as err:
        raise VpinnError(f"--resume: {err}") from None
    sizes = state.get("sizes")
    if not (isinstance(sizes, dict) and all(isinstance(sizes.get(k), int) and sizes[k] >= 0 for k in ("batch", "chunk"))):
        raise VpinnError(f"--resume: {path} has no valid entry 'sizes'; {DAMAGED}")
    return state


def _continue(trainer: Trainer, state: dict, path: Path) -> None:
    """Load a checkpoint's state into ``trainer``; a checkpoint without the keys or shapes of
    this problem's training state is refused in one line."""
    try:
        trainer.load_state_dict(state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        what = f"has no entry {err}" if isinstance(err, KeyError) else f"does not fit this problem ({str(err).splitlines()[0]})"
        raise VpinnError(f"--resume: {path} {what}; {DAMAGED}") from None


def solve(problem_path: str | Path, options: SolveOptions = SolveOptions(), echo: Callable[[str], None] = print) -> dict:
    """Solve the problem in ``problem_path``; returns the summary (also written as JSON).  Under
    ``torchrun``, on every rank (see the module docstring).

    Nothing is written before every check has passed: the problem file, the checkpoint to
    resume and the results directory's owner (:mod:`vpinn.commands.results`)."""
    started = time.perf_counter()
    spec = load_problem(problem_path, options.overrides)
    device = rank_device(torch.device(device_name(options.device)))
    spec = dataclasses.replace(spec, train=spec.train.on_device(device.type))  # a batch left out: the device's
    if spec.train.memory_limit and world_size() > 1:
        raise VpinnError("train.memory_limit: not available under torchrun (each rank would fit its own batch); "
                         "set train.batch instead")
    group = start(device, spec.train.compression, spec.train.bits, spec.train.seed)
    try:
        return _solve(problem_path, spec, device, group, options, echo if group.is_root else lambda line: None, started)
    finally:
        finish(group)


def _solve(problem_path: str | Path, spec: ProblemSpec, device: torch.device, group: Group, options: SolveOptions,
           echo: Callable[[str], None], started: float) -> dict:
    out = spec.output_path(options.output)
    state = _resume_state(out / "checkpoint.pt", spec) if options.resume else None
    with (ResultsDirectory(out, resume=options.resume, overwrite=options.overwrite) if group.is_root
          else contextlib.nullcontext()) as directory:
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
        assembly = assemble(spec, device, group)
        if spec.train.compensate:
            calibration.update(_compensate_batch(spec, assembly, echo))
        fitted = spec.train.micro_batch if spec.train.batch == "auto" else assembly.terms[0].batch
        extra = {"fingerprint": fingerprint(spec), "sizes": {"batch": fitted, "chunk": spec.train.chunk},
                 "world_size": group.size,
                 "problem_file": str(Path(problem_path).resolve()),  # vpinn.load resolves mesh files against it
                 "overrides": dict(options.overrides)}
        save = (lambda s: save_checkpoint(out / "checkpoint.pt", {**s, **extra})) if group.is_root else None
        with TerminalObserver(options.progress and group.is_root) as observer:
            trainer = build_trainer(spec, assembly, save=save, max_time=options.max_time, observer=observer)
            if state is not None:
                _continue(trainer, state, out / "checkpoint.pt")
                phase = trainer.phases[trainer.current]
                echo(f"resuming {spec.name} at {phase.name} step {trainer.done[trainer.current]} ({trainer.step} steps in all"
                     f"{_ranks_then_now(state, group)})")
            if group.is_root:
                directory.clear()
                settings = "".join(f"# run with --set {key}={value!r}\n" for key, value in options.overrides.items())
                write_text(out / "problem.toml", settings + Path(problem_path).read_text(encoding="utf-8"))
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            echo(f"{spec.name}: {assembly.terms[0].rule.size:,} quadrature points, batch {_batch_text(spec, assembly)}, "
                 f"{sum(p.numel() for p in assembly.field.parameters()):,} parameters, {device}, "
                 f"phases {' + '.join(f'{p.optimizer} ({p.dtype})' for p in spec.train.phases)}")
            try:
                result = trainer.run()
            except TrainingDiverged:
                if group.is_root:
                    write_csv(out / "history.csv", trainer.history)
                raise
        if group.is_root:
            write_csv(out / "history.csv", result.history)
        if result.status == "interrupted":
            number = observer.signal or signal.SIGINT  # a rank that did not get the signal stops as agreed
            echo(f"interrupted by {signal.Signals(number).name} at step {trainer.step}: checkpoint saved to "
                 f"{out / 'checkpoint.pt'}; continue with --resume")
            return {"status": "interrupted", "signal": int(number)}
        batch = assembly.terms[0].batch
        calibration.update(world_size=group.size, global_batch=batch * group.size, compression=group.compression,
                           communicated_bytes=group.bytes_sent,
                           communicated_bytes_per_step=round(group.bytes_sent / max(1, sum(result.steps.values()))))
        summary = _finish(spec, assembly, result, trainer.dtype, out, started, options.overrides,
                          {**calibration, "final_batch": _final_batch(trainer)})
    if group.is_root:
        echo(_one_line(summary, out))
    return summary


def _ranks_then_now(state: dict, group: Group) -> str:
    """``", written by 2 ranks, now 1"`` when the number of ranks changed since the checkpoint."""
    before = int(state.get("world_size", 1))
    return "" if before == group.size else f"; written by {before} rank{'s' * (before > 1)}, now {group.size}"


def _compensate_batch(spec: ProblemSpec, assembly: Assembly, echo: Callable[[str], None]) -> dict:
    """``train.compensate``: raise every term's per-rank batch by the measured factor
    ``1 + sigma_q^2 / sigma_s^2`` (:mod:`vpinn.distributed.compensate`); returns summary entries."""
    measured = calibrate(assembly, spec.train.bits, spec.train.seed)
    assembly.terms[:] = [dataclasses.replace(t, batch=fit(math.ceil(t.batch * measured.factor), sampler))
                         for t, sampler in zip(assembly.terms, assembly.samplers)]
    echo(f"train.compensate: sampling variance {measured.sampling_variance:.3e}, dither variance "
         f"{measured.quantisation_variance:.3e} per coordinate: batch x {measured.factor:.4f} = {assembly.terms[0].batch:,}")
    return {"sampling_variance": measured.sampling_variance, "quantisation_variance": measured.quantisation_variance,
            "compensation_factor": measured.factor}


def _finish(spec: ProblemSpec, assembly: Assembly, result: TrainResult, dtype: torch.dtype, out: Path, started: float,
            overrides: dict, extra: dict) -> dict:
    """Evaluate, export fields and plots, and write the summary (with ``extra`` entries)."""
    physics, trial, device, chunk, group = assembly.physics, assembly.trial, assembly.device, assembly.chunk, assembly.group
    rule = assembly.evaluation_rule
    errors = relative_errors(physics, trial, rule, chunk, device, dtype, group) if physics.exact else {}
    exact_energy = (energy(on_volume_rule(assembly.terms, rule), physics.exact, chunk, device, dtype, group)
                    if physics.exact else None)
    if not group.is_root:  # the sums above are collective; files are rank 0's
        return {"status": result.status, **errors}
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
        "batch": spec.train.batch if spec.train.batch == "auto" else assembly.terms[0].batch,
        "evaluation_points": rule.size,
        "parameters": sum(p.numel() for p in assembly.field.parameters()),
        "derivatives": spec.model.derivatives,
        "peak_memory_bytes": peak_memory_bytes(device),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS (VmHWM)",
        "peak_reserved_bytes": peak_reserved_bytes(device),
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
