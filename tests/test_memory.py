"""Memory: the memory command's table and plot, its checks, and the memory budget option."""

from __future__ import annotations

import csv

import pytest
import torch

from tests.conftest import run_cli
from vpinn.commands.memory import checks
from vpinn.commands.solve import SolveOptions, solve
from vpinn.errors import ProblemFileError
from vpinn.measurement.budget import fit_batch
from vpinn.measurement.engine import measure
from vpinn.problem import load_problem
from vpinn.problem.spec import parse_bytes

COLUMNS = ["kind", "points", "batch", "allocator", "peak_MiB", "above_baseline_MiB", "bytes_per_point",
           "ms_per_step", "points_per_s", "device"]


@pytest.mark.slow  # a command in fresh processes, 20-25 s: run with -m slow
def test_memory_command_writes_table_and_plot(small_problem, tmp_path):
    """Same code path as the GPU check (--device cuda), on CPU with small sizes."""
    out = tmp_path / "memory"
    done = run_cli("memory", str(small_problem), "--device", "cpu", "--batch", "64,256", "--points", "1000",
                   "--full-points", "4000", "--chunk", "1000", "--steps", "2", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with open(out / "memory.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS
    assert [(r["kind"], int(r["points"]), int(r["batch"])) for r in rows] == [
        ("minibatch step", 1000, 64), ("minibatch step", 1000, 256), ("full gradient", 4096, 1000)]  # nearest cube of cells
    assert all(float(r["above_baseline_MiB"]) >= 0 and float(r["ms_per_step"]) > 0 for r in rows)
    assert (out / "memory.png").stat().st_size > 10_000
    assert (out / "memory.md").read_text().count("\n") == 2 + len(rows)
    assert "bytes per point at b = 256" in done.stdout


def test_checks_read_flatness_and_slope_off_the_table():
    rows = [{"kind": "minibatch step", "allocator": "tuned", "points": n, "batch": b,
             "above_baseline_MiB": 5e-3 * b * (1.05 if n > 1e6 else 1.0), "bytes_per_point": 5000.0}
            for n in (10**5, 10**8) for b in (10**4, 10**5)]
    lines = checks(rows)
    assert "flat in N: at b = 10,000, N = 100,000,000 uses +5.0% memory" in lines[0]
    assert lines[2].endswith("= 1.00")


@pytest.mark.parametrize("text, value", [("2GiB", 2 * 2**30), ("1.5 GB", 1_500_000_000), ("512MiB", 2**29), ("1e6", 10**6)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_bad_memory_limit_is_a_one_line_error(small_problem):
    with pytest.raises(ProblemFileError, match="train.memory_limit: '2 parsecs' is not a size"):
        load_problem(small_problem, {"train.memory_limit": "2 parsecs"})


#: a 32,768-point training rule, larger than the calibration's probes (a batch beyond its rule is capped to it)
LARGER_RULE = {"quadrature.cells": [16, 16, 16]}
#: a 262,144-point training rule, larger than the batch a 48 MiB budget fits
LARGEST_RULE = {"quadrature.cells": [32, 32, 32]}


def test_memory_limit_picks_a_batch_that_fits(small_problem):
    settings = {**LARGER_RULE, "train.memory_limit": "48MiB"}
    spec = load_problem(small_problem, settings)
    estimate = fit_batch(str(small_problem), spec, settings, "cpu")
    assert 1000 < estimate.batch and 0 < estimate.per_point < 20_000
    assert estimate.chunk == min(spec.train.chunk, estimate.batch // 2)  # float64 finish: half the points
    used = measure({"problem": str(small_problem), "overrides": {**LARGER_RULE, "train.batch": estimate.batch},
                    "device": "cpu", "steps": 2, "min_seconds": 0.0})["above_baseline_bytes"]
    assert used <= 48 * 2**20
    assert used >= 0.5 * 48 * 2**20  # and it is not needlessly small


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_memory_on_cuda_counts_live_tensors(small_problem):
    result = measure({"problem": str(small_problem), "overrides": {"train.batch": 4096}, "device": "cuda", "steps": 2})
    assert 0 < result["above_baseline_bytes"] < 4096 * 20_000


@pytest.mark.slow  # a command in fresh processes, 20-25 s: run with -m slow
@pytest.mark.filterwarnings("ignore:train.batch = .* capped:vpinn.errors.VpinnWarning")  # a fit beyond the rule
def test_resume_keeps_the_batch_the_memory_limit_chose(small_problem, tmp_path):
    """--resume reuses the calibrated batch and chunk from the checkpoint instead of fitting anew
    (a new fit differs by the spread of memory readings, and the batches would change)."""
    settings = {**LARGEST_RULE, "train.memory_limit": "48MiB", "train.steps": 4, "train.lbfgs.iterations": 0}
    lines: list[str] = []
    first = solve(small_problem, SolveOptions(output=str(tmp_path), progress=False, overrides=settings), echo=lines.append)
    assert any(line.startswith("train.memory_limit = 48MiB: batch") for line in lines)
    lines.clear()
    again = solve(small_problem, SolveOptions(resume=True, output=str(tmp_path), progress=False, overrides=settings),
                  echo=lines.append)
    assert not any(line.startswith("train.memory_limit") for line in lines)
    assert again["batch"] == first["batch"] > 1000 and again["steps"] == {"adam": 4}
