"""``run.py variance`` and ``run.py batches`` on the small problem: their tables, in a few seconds."""

from __future__ import annotations

import csv

import pytest

from conftest import run_cli
from vpinn.commands import main
from vpinn.commands.batches import step_overhead


def test_variance_writes_one_row_per_sampler_with_its_ratio_to_uniform(small_problem, tmp_path, capsys):
    out = tmp_path / "variance"
    assert main(["variance", str(small_problem), "--batch", "64", "--repeats", "8", "--strata", "8", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "variance.csv").read_text().splitlines()))
    assert [r["sampler"] for r in rows] == ["uniform", "stratified", "stratified-neyman", "sobol", "importance"]
    assert float(rows[0]["ratio_to_uniform"]) == 1.0 and all(float(r["trace"]) > 0 for r in rows)
    assert (out / "variance.png").exists() and (out / "split.json").exists()
    assert "two-stage split over 8 strata" in capsys.readouterr().out


def test_batches_tabulates_each_batch_size_with_its_initial_noise(small_problem, tmp_path):
    out = tmp_path / "batches"
    done = run_cli("batches", str(small_problem), "--batch", "64,256", "--max-time", "1", "--repeats", "8",
                   "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((out / "batches.csv").read_text().splitlines()))
    assert [int(r["batch"]) for r in rows] == [64, 256] and all(int(r["steps"]) > 0 for r in rows)
    assert float(rows[0]["initial_trace"]) > float(rows[1]["initial_trace"])  # noise falls with b
    assert float(rows[0]["updates_per_epoch"]) == 4096 / 64
    assert "log-log slope" in done.stdout and (out / "noise.png").exists() and (out / "batches.png").exists()


def test_the_step_overhead_is_the_intercept_over_the_slope_of_the_step_time():
    """s/step = 0.02 + 5e-6 b over three fixed batches (auto rows left out): c0 / c1 = 4,000 points."""
    rows = [{"batch": b, "seconds_per_step": 0.02 + 5e-6 * b} for b in (1024, 4096, 16384)]
    rows.append({"batch": "auto", "seconds_per_step": 1.0})
    assert step_overhead(rows) == pytest.approx(4000.0, rel=1e-9)
    assert step_overhead(rows[:1]) is None
