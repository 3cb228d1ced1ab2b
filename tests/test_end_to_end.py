"""End to end: a reduced default problem trains to a real accuracy and writes every output."""

from __future__ import annotations

import json

import meshio
import numpy as np
import pytest

from tests.conftest import run_cli, solve_bundled

REDUCED = {
    "quadrature.cells": [16, 16, 16], "quadrature.order": 3, "quadrature.finish.cells": [4, 4, 4],
    "quadrature.evaluation.cells": [8, 8, 8], "quadrature.evaluation.order": 3,
    "train.phase[0].steps": 300, "train.phase[1].steps": 15, "train.batch": 2048, "train.max_time": 0,
    "output.grid": [9, 10, 11], "output.formats": ["vtu", "xdmf"],
}


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    """The bundled default problem, smaller: 300 Adam and 15 ENGD steps on a 110,592-point rule
    (about 10 s of training on 2 cores)."""
    return solve_bundled(tmp_path_factory.mktemp("poisson"), "poisson_cube", REDUCED)


def test_reduced_default_problem_is_accurate(reduced_run):
    out, summary = reduced_run
    assert summary["status"] == "completed"
    assert summary["rel_l2"] <= 5e-4 and summary["rel_h1"] <= 1e-3  # measured: 3.0e-4, 4.2e-4
    assert summary["steps"] == {"adam": 300, "engd": 15}
    assert json.loads((out / "summary.json").read_text())["rel_l2"] == summary["rel_l2"]
    assert summary["exact_energy"] == pytest.approx(-3 * np.pi**2 / 16, rel=1e-8)


def test_every_output_is_written(reduced_run):
    out, _ = reduced_run
    for name in ("summary.json", "history.csv", "loss.png", "error.png", "solution.png", "solution.vtu",
                 "solution.xdmf", "problem.toml", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    for column in ("step", "phase", "epoch", "batch", "loss", "lr", "grad_norm", "elapsed_s", "energy", "rel_l2", "rel_h1"):
        assert column in header
    assert not list(out.glob(".*.tmp"))  # no leftovers from atomic writes


@pytest.mark.parametrize("name", ["solution.vtu", "solution.xdmf"])
def test_solution_fields_read_back(reduced_run, name):
    out, summary = reduced_run
    mesh = meshio.read(out / name)
    nodes = 9 * 10 * 11
    assert mesh.points.shape == (nodes, 3)
    assert mesh.cells_dict["hexahedron"].shape == (8 * 9 * 10, 8)
    shapes = {k: v.shape for k, v in mesh.point_data.items()}
    assert shapes == {"u": (nodes,), "grad_u": (nodes, 3), "u_exact": (nodes,), "error": (nodes,)}
    x, y, z = mesh.points.T
    np.testing.assert_allclose(mesh.point_data["u_exact"], np.sin(np.pi * x) * np.sin(np.pi * y) * np.sin(np.pi * z), atol=1e-12)
    np.testing.assert_allclose(mesh.point_data["error"], mesh.point_data["u"] - mesh.point_data["u_exact"], atol=1e-15)
    boundary = (x == 0) | (x == 1) | (y == 0) | (y == 1) | (z == 0) | (z == 1)
    assert np.abs(mesh.point_data["u"][boundary]).max() < 1e-12  # hard Dirichlet condition
    assert np.abs(mesh.point_data["error"]).max() < 20 * summary["rel_l2"]


@pytest.mark.slow  # a command in fresh processes, 20-25 s: run with -m slow
def test_bench_prints_and_saves_a_table(small_problem, tmp_path):
    done = run_cli("bench", str(small_problem), "--batch", "64,256", "--steps", "5", "--methods", "autograd",
                   "--out", str(tmp_path / "bench"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ms/step") == 2
    rows = (tmp_path / "bench" / "bench.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("method,batch,ms_per_step,points_per_s")
    assert "| autograd | 256 |" in (tmp_path / "bench" / "bench.md").read_text()


def test_sobol_training_rule_and_neumann_faces_train(tmp_path):
    """A variant: Sobol training points, Neumann data on two faces (flux from the exact solution)."""
    settings = {**REDUCED, "quadrature.rule": "sobol", "quadrature.points": 2**14, "train.phase[1].steps": 10,
                "output.formats": ["vtu"],
                "bc": [{"type": "dirichlet", "on": ["xmin", "ymin", "ymax", "zmin", "zmax"], "value": "auto"},
                       {"type": "neumann", "on": ["xmax"], "value": "auto"}]}
    _, summary = solve_bundled(tmp_path, "poisson_cube", settings)
    assert summary["quadrature_points"] == 2**14
    assert summary["rel_l2"] < 3e-2 and summary["rel_energy"] < 6e-2
