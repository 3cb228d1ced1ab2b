"""The bundled mesh problems' acceptance numbers (slow: minutes each on 2 cores).

* ``poisson_cube_mesh`` (u* = sin(pi x) sin(pi y) sin(pi z) on the cube mesh) within 2x the
  relative L2 error of ``poisson_cube`` (the box) at equal steps and a rule of the same size;
* ``hollow_sphere`` (u* = 1/r + x): relative L2 <= 1e-3;
* ``thick_cylinder`` (Lamé, plane strain): relative L2 <= 1e-3, energy norm <= 1e-2;
* ``thick_cylinder_sector`` (the same on a 30-degree sector, an oblique roller): the same targets;
each as `python run.py solve problems/<name>.toml` runs it (10 minutes of training at most).
"""

from __future__ import annotations

import pytest

from conftest import solve_bundled

#: equal steps for the box and the mesh: the file's 500 Adam steps, then 10 ENGD steps, no time limit
#: (measured: relative L2 1.44e-3 on the box, 2.49e-3 on the mesh)
EQUAL_STEPS = {"train.max_time": 0, "train.phase[1].steps": 10}
#: the box on a rule the size of the mesh's (2,985,984 against 2,975,744 points)
BOX_RULE = {"quadrature.cells": [48, 48, 48], "quadrature.order": 3}


@pytest.mark.slow
def test_cube_mesh_matches_the_box(tmp_path):
    _, box = solve_bundled(tmp_path / "box", "poisson_cube", {**EQUAL_STEPS, **BOX_RULE})
    _, mesh = solve_bundled(tmp_path / "mesh", "poisson_cube_mesh", EQUAL_STEPS)
    assert box["steps"] == mesh["steps"]
    assert abs(mesh["quadrature_points"] / box["quadrature_points"] - 1) < 0.01
    assert mesh["rel_l2"] <= 2 * box["rel_l2"], (mesh, box)


@pytest.mark.slow
@pytest.mark.parametrize("name, l2, energy_norm", [("hollow_sphere", 1e-3, None), ("thick_cylinder", 1e-3, 1e-2),
                                                   ("thick_cylinder_sector", 1e-3, 1e-2)])
def test_mesh_problem_meets_its_acceptance_numbers(tmp_path, name, l2, energy_norm):
    _, summary = solve_bundled(tmp_path, name, {})
    assert summary["train_seconds"] <= 600 + 60, summary
    assert summary["rel_l2"] <= l2, summary
    if energy_norm is not None:
        assert summary["rel_energy"] <= energy_norm, summary
