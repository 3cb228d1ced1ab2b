"""Elasticity problem files: one-line errors for bad materials and boundary conditions, a reduced
Lamé sphere solved end to end (outputs read back), and the bundled problems' acceptance numbers
(slow).

The Lamé hollow sphere (a = 1, b = 4, p = 1, E = 1000, nu = 0.3) has u = u_r(r) x/r with
u_r = [(1-2nu) A r + (1+nu) B/(2 r^2)]/E, A = p a^3/(b^3-a^3) = 1/63, B = p a^3 b^3/(b^3-a^3) = 64/63.
"""

from __future__ import annotations

import json

import meshio
import numpy as np
import pytest

from tests.conftest import A_IN as A
from tests.conftest import B_OUT as B
from tests.conftest import LAME_A, LAME_B, P, REPO, error_of, run_cli, solve_bundled, u_r
from vpinn.problem import load_problem

SPHERE = (REPO / "problems" / "lame_sphere.toml").read_text()
CUBE = (REPO / "problems" / "elasticity_cube.toml").read_text()


@pytest.mark.parametrize("old, new, key, words", [
    ("E = 1.0\nnu = 0.3", "E = -1.0\nnu = 0.3", "pde.E", "must be positive"),
    ("E = 1.0\nnu = 0.3", "E = 0.0\nnu = 0.3", "pde.E", "must be positive"),
    ("E = 1.0\nnu = 0.3", "E = 1.0\nnu = 0.5", "pde.nu", "must lie in (-1, 0.5)"),
    ("E = 1.0\nnu = 0.3", "E = 1.0\nnu = -1.0", "pde.nu", "must lie in (-1, 0.5)"),
    ("E = 1.0\nnu = 0.3", "E = 1.0", "pde.nu", "required key is missing"),
    ("E = 1.0\nnu = 0.3", "E = 1.0\nnu = 0.3\nmu = 2.0", "pde.E", "not both pairs"),
    ("E = 1.0\nnu = 0.3", "lam = 1.0", "pde.mu", "required with the other"),
    ("E = 1.0\nnu = 0.3", "lam = 1.0\nmu = -2.0", "pde.mu", "must be positive"),
    ("E = 1.0\nnu = 0.3", "lam = -1.0\nmu = 1.0", "pde.lam", "positive bulk modulus"),
    ("E = 1.0\nnu = 0.3", "lambda = 1.0\nmu = 1.0", "pde.lambda", "did you mean 'lam'"),
])
def test_bad_materials_are_one_line_errors_naming_the_key(old, new, key, words):
    assert old in CUBE
    text = CUBE.replace(old, new, 1)
    error = error_of(text)
    assert error.key == key and words in error.reason
    if error.line is not None:  # the key's own line (a missing key has none)
        assert text.splitlines()[error.line - 1].split("=")[0].strip() == key.split(".")[-1]


@pytest.mark.parametrize("text, old, new, key, words", [
    (SPHERE, 'on = "inner"', 'on = "innner"', "bc[1].on[0]", "unknown face 'innner' of the sphere_octant (did you mean 'inner'?"),
    (SPHERE, 'on = ["x0", "y0", "z0"]', 'on = ["x0", "y0", "outer"]', "bc[0].on[2]", "a roller needs a planar face"),
    (SPHERE, 'type = "roller"', 'type = "dirichlet"', "bc[0].type", "'dirichlet' is not a condition of a elasticity problem"),
    (SPHERE, 'type = "roller"', 'type = "rolller"', "bc[0].type", "did you mean 'roller'"),
    (SPHERE, 'on = ["x0", "y0", "z0"]', 'on = ["x0", "y0", "z0"]\nvalue = "auto"', "bc[0].value", "takes no value"),
    (SPHERE, 'type = "sphere_octant"\ninner_radius = 1.0\nouter_radius = 4.0', 'type = "box"', "bc[0].on[0]",
     "unknown face 'x0' of the box"),
    (SPHERE, "inner_radius = 1.0\nouter_radius = 4.0", "inner_radius = 1.0\nouter_radius = 0.5", "domain.outer_radius", "must exceed"),
    (CUBE, 'u = ["sin(pi*x)*sin(pi*y)*sin(pi*z)", "sin(pi*x)*sin(pi*y)*sin(pi*z)", "sin(pi*x)*sin(pi*y)*sin(pi*z)"]',
     'u = "sin(pi*x)*sin(pi*y)*sin(pi*z)"', "exact.u", "needs a list of 3 expressions"),
    (CUBE, 'value = ["0", "0", "0"]', 'value = ["0", "0"]', "bc[0].value", "must have 3 entries"),
    (CUBE, '[exact]\nu = ["sin', '[[bc]]\ntype = "traction"\non = "xmax"\n[exact]\nu = ["sin', "bc[1].on", "already has a condition"),
])
def test_bad_conditions_are_one_line_errors_naming_the_key(text, old, new, key, words):
    assert old in text
    error = error_of(text.replace(old, new, 1))
    assert error.key == key and words in error.reason, error


def test_scalar_problems_reject_vector_conditions_and_vector_exact_solutions():
    poisson = 'name = "p"\n[exact]\nu = ["x", "y", "z"]\n'
    assert error_of(poisson).key == "exact.u"
    clamp = 'name = "p"\n[exact]\nu = "x"\n[[bc]]\ntype = "clamp"\n'
    assert "is not a condition of a poisson problem" in error_of(clamp).reason
    missing_type = 'name = "p"\n[exact]\nu = "x"\n[[bc]]\non = "xmin"\n'
    assert error_of(missing_type).key == "bc[0].type"


def test_clamp_data_must_vanish_on_roller_planes(tmp_path):
    """u = g + d*N with g_x != 0 on x = 0 would break the roller there: one line, with the file and line."""
    text = SPHERE.replace('type = "traction"', 'type = "clamp"').replace('["p*x/a", "p*y/a", "p*z/a"]', '["1 + y", "0", "0"]')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = run_cli("solve", str(path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    line = next(i for i, t in enumerate(text.splitlines()) if t.startswith('value = ["1 + y"')) + 1
    assert done.stderr.startswith(f"error: {path}:{line}: bc[1].value: the clamp data's component normal to the roller face 'x0'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("material", ["E = -1000.0\nnu = 0.3", "E = 1000.0\nnu = 0.5"])
def test_cli_rejects_bad_materials_in_one_line(tmp_path, material):
    path = tmp_path / "bad.toml"
    path.write_text(SPHERE.replace("E = 1000.0\nnu = 0.3\nbody_force", f"{material}\nbody_force"))
    done = run_cli("solve", str(path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {path}:") and "Traceback" not in done.stderr
    assert ("pde.E: must be positive" if "-1000" in material else "pde.nu: must lie in (-1, 0.5)") in done.stderr


def test_bundled_elasticity_problems_load():
    for name, pde_nu in (("lame_sphere", 0.3), ("elasticity_cube", 0.3), ("bending_beam", 0.3)):
        spec = load_problem(REPO / "problems" / f"{name}.toml")
        assert spec.pde.type == "elasticity" and spec.pde.poisson_ratio == pde_nu and len(spec.exact.components) == 3


GRID = (9, 7, 6)
REDUCED_SPHERE = {
    "quadrature.cells": [16, 12, 12], "quadrature.order": 3, "quadrature.boundary.cells": [8, 8],
    "quadrature.finish.cells": [4, 3, 3],
    "quadrature.evaluation.cells": [8, 6, 6], "quadrature.evaluation.order": 3, "train.phase[0].steps": 500,
    "train.batch": 2048, "train.boundary_batch": 512, "train.phase[1].steps": 10, "train.max_time": 0,
    "train.eval_every": 250, "output.grid": list(GRID),
}


@pytest.fixture(scope="module")
def reduced_sphere(tmp_path_factory):
    """The Lamé sphere with smaller rules and shorter training (about 20 s on 2 cores)."""
    return solve_bundled(tmp_path_factory.mktemp("lame"), "lame_sphere", REDUCED_SPHERE)


def test_reduced_sphere_is_accurate(reduced_sphere):
    out, summary = reduced_sphere
    assert summary["status"] == "completed" and summary["steps"] == {"adam": 500, "engd": 10}
    assert summary["rel_l2"] <= 3e-2 and summary["rel_energy"] <= 1e-1
    assert summary["exact_energy"] == pytest.approx(-np.pi / 4 * P * A**2 * u_r(A), rel=1e-4)  # a coarse rule
    assert json.loads((out / "summary.json").read_text())["rel_l2"] == summary["rel_l2"]
    for name in ("solution.vtu", "solution.png", "profile.png", "profile.csv", "loss.png", "error.png", "history.csv"):
        assert (out / name).stat().st_size > 0, name


def test_sphere_fields_read_back(reduced_sphere):
    out, summary = reduced_sphere
    mesh = meshio.read(out / "solution.vtu")
    nodes = int(np.prod(GRID))
    shapes = {k: v.shape for k, v in mesh.point_data.items()}
    assert shapes == {"displacement": (nodes, 3), "strain": (nodes, 6), "stress": (nodes, 6), "von_mises": (nodes,),
                      "displacement_exact": (nodes, 3), "error": (nodes, 3), "error_magnitude": (nodes,)}
    x = mesh.points
    r = np.linalg.norm(x, axis=1)
    assert np.all((r > A - 1e-12) & (r < B + 1e-12)) and np.all(x > -1e-12)
    data = mesh.point_data
    np.testing.assert_allclose(data["displacement_exact"], u_r(r)[:, None] * x / r[:, None], rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(data["error"], data["displacement"] - data["displacement_exact"], atol=1e-15)
    np.testing.assert_allclose(data["error_magnitude"], np.linalg.norm(data["error"], axis=1), atol=1e-15)
    for axis in range(3):  # rollers: the normal component vanishes on each symmetry plane
        on_plane = np.abs(x[:, axis]) < 1e-12
        assert on_plane.any() and np.abs(data["displacement"][on_plane, axis]).max() < 1e-15
    # von Mises of the Lamé stress: |sigma_rr - sigma_tt| = 3 B / (2 r^3); computed within 10% of its peak
    exact_mises = 1.5 * LAME_B / r**3
    assert np.abs(data["von_mises"] - exact_mises).max() < 0.1 * exact_mises.max()


def test_sphere_profile_is_lames(reduced_sphere):
    out, _ = reduced_sphere
    lines = (out / "profile.csv").read_text().splitlines()
    assert lines[0].split(",") == ["r", "u_r", "u_r_exact", "sigma_rr", "sigma_rr_exact", "sigma_thetatheta",
                                   "sigma_thetatheta_exact"]
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    r = table[:, 0]
    assert r[0] == A and r[-1] == B and len(r) == 201
    np.testing.assert_allclose(table[:, 2], u_r(r), rtol=1e-12)
    np.testing.assert_allclose(table[:, 4], LAME_A - LAME_B / r**3, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(table[:, 6], LAME_A + LAME_B / (2 * r**3), rtol=1e-10)
    assert np.abs(table[:, 1] - table[:, 2]).max() < 2e-2 * u_r(A)  # the computed u_r, within 2% of u_r(a)
    assert np.abs(table[:, 3] - table[:, 4]).max() < 0.1 * P  # and sigma_rr within 10% of p


ACCEPTANCE = [
    # name, relative L2 bound, relative energy-norm bound, wall-time bound (s); measured on 2
    # cores: 4.72e-6 in 300 s, 1.58e-5 and 5.62e-5 in 599 s, 1.39e-5, 4.02e-5 (the last two under load)
    ("poisson_cube", 1e-5, None, 330),
    ("lame_sphere", 3e-5, 3e-4, 660),
    ("elasticity_cube", 5e-5, None, None),
    ("bending_beam", 5e-5, None, None),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, l2, energy_norm, seconds", ACCEPTANCE)
def test_bundled_problem_meets_its_acceptance_numbers(tmp_path, name, l2, energy_norm, seconds):
    """The full bundled problem, as `python run.py solve problems/<name>.toml` runs it."""
    _, summary = solve_bundled(tmp_path, name, {})
    assert summary["rel_l2"] <= l2, summary
    if energy_norm is not None:
        assert summary["rel_energy"] <= energy_norm, summary
    if seconds is not None:
        assert summary["wall_seconds"] <= seconds, summary
