"""Rollers on planes normal to no axis: ``u . n = 0`` holds exactly for any network (float64, to
1e-12 of the displacement's size), the tangential components stay free, the other conditions
stay exact, ``grad u`` and the parameter Jacobian (ENGD's rows) agree with autograd, the
rollers that cannot be combined are one-line errors, and Lamé's cylinder on a 30-degree sector
(``thick_cylinder_sector``: u* radial, tangent to the oblique cut) is solved on a short schedule
(the full file: ``tests/test_mesh_problems.py``, slow)."""

from __future__ import annotations

import math
import textwrap

import meshio
import numpy as np
import pytest
import torch

from conftest import REPO, assembled, error_of, solve_bundled
from vpinn.geometry.mesh import read_mesh

F64 = torch.float64
#: a small network; autograd's spatial Jacobian, whose graph can be differentiated row by row
#: (the fused one frees its buffers after one backward pass)
SMALL = {"model.width": 6, "model.depth": 2, "model.derivatives": "autograd"}
#: the rotated cube's turn about z
ANGLE = math.pi / 6


def points_on(mesh, face: str, count: int = 5, seed: int = 0) -> torch.Tensor:
    """Random points on every triangle of a face, and its vertices (float64)."""
    corners = torch.as_tensor(mesh.vertices[mesh.faces[face]])
    weights = torch.rand(count, len(corners), 3, dtype=F64, generator=torch.Generator().manual_seed(seed))
    inside = torch.einsum("ntk,tkj->ntj", weights / weights.sum(2, keepdim=True), corners).reshape(-1, 3)
    return torch.cat([inside, corners.reshape(-1, 3)])


def rotated_cube(tmp_path) -> str:
    """The bundled cube turned by 30 degrees about z, without tags, and an elasticity problem on it:
    rollers on the turned faces ``east`` (was xmax) and ``north`` (was ymax; the two meet at 90
    degrees) and on ``bottom`` (z = 0), a clamp u = (0, 0, z/10) on ``top``; the faces selected by planes."""
    mesh = read_mesh(REPO / "problems" / "meshes" / "cube.msh")
    c, s = math.cos(ANGLE), math.sin(ANGLE)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    path = tmp_path / "turned.vtu"
    meshio.write(path, meshio.Mesh(mesh.vertices @ rotation.T, [("tetra", mesh.tetrahedra)]))
    return textwrap.dedent(f"""
        name = "turned"
        [domain]
        type = "mesh"
        file = "{path}"
        [[domain.select]]
        type = "plane"
        name = "east"
        point = [{c}, {s}, 0]
        normal = [{c}, {s}, 0]
        [[domain.select]]
        type = "plane"
        name = "north"
        point = [{-s}, {c}, 0]
        normal = [{-s}, {c}, 0]
        [[domain.select]]
        type = "plane"
        name = "bottom"
        point = [0, 0, 0]
        normal = [0, 0, -1]
        [[domain.select]]
        type = "plane"
        name = "top"
        point = [0, 0, 1]
        normal = [0, 0, 1]
        [pde]
        type = "elasticity"
        E = 1.0
        nu = 0.3
        body_force = ["0", "0", "0"]
        [[bc]]
        type = "roller"
        on = ["east", "north", "bottom"]
        [[bc]]
        type = "clamp"
        on = ["top"]
        value = ["0", "0", "z/10"]
        [quadrature]
        rule = "simplex"
        [quadrature.boundary]
        rule = "simplex"
        [quadrature.finish]
        rule = "simplex"
        [quadrature.evaluation]
        rule = "simplex"
        [model]
        width = 6
        depth = 2
        derivatives = "autograd"
        [train]
        dtype = "float64"
        """)


@pytest.fixture
def sector():
    return assembled(REPO / "problems" / "thick_cylinder_sector.toml", SMALL)[1]


@pytest.fixture
def turned(tmp_path):
    path = tmp_path / "turned.toml"
    path.write_text(rotated_cube(tmp_path))
    return assembled(path)[1]


def normal_and_tangential(assembly, face: str) -> tuple[float, float, float]:
    """max |u . n| on the face (its vertices too), min |u - (u . n) n| inside its triangles (on
    their edges other conditions may fix the tangential part), and max |u| there."""
    mesh = assembly.domain.mesh
    x = points_on(mesh, face)
    with torch.no_grad():
        u = assembly.trial.value(x)
    n = torch.tensor(mesh.planes[face].normal, dtype=F64)
    along = u @ n
    inside = len(x) - 3 * len(mesh.faces[face])
    return float(along.abs().max()), float((u - along[:, None] * n)[:inside].norm(dim=1).min()), float(u.abs().max())


def test_the_sector_cut_is_a_roller_for_any_network(sector):
    """``cut`` (theta = 30 degrees) is oblique and crosses ``y0`` at 30 degrees on the axis, outside
    the domain (r >= 1); both, and the ends, hold exactly, and u is tangential there, not zero."""
    assert len(sector.trial.projection.normals) == 1 and sector.trial.projection.weights[0].crossing is not None
    normal, tangential, size = normal_and_tangential(sector, "cut")
    assert normal <= 1e-12 * size and tangential > 1e-3 * size
    mesh = sector.domain.mesh
    for face, axis in (("y0", 1), ("bottom", 2), ("top", 2)):
        with torch.no_grad():
            u = sector.trial.value(points_on(mesh, face))
        assert float(u[:, axis].abs().max()) <= 1e-12 * size
        inside = len(u) - 3 * len(mesh.faces[face])
        assert float(u[:inside, [k for k in range(3) if k != axis]].norm(dim=1).min()) > 1e-3 * size


def test_perpendicular_oblique_rollers_and_a_clamp(turned):
    """Two oblique rollers meeting at 90 degrees (``east``, ``north``), an axis roller (``bottom``)
    and a clamp (``top``): each holds exactly, also on the edges where they meet."""
    projection = turned.trial.projection
    assert len(projection.normals) == 2 and all(w.crossing is None for w in projection.weights)
    for face in ("east", "north"):
        normal, tangential, size = normal_and_tangential(turned, face)
        assert normal <= 1e-12 * size and tangential > 1e-3 * size
    mesh = turned.domain.mesh
    top = points_on(mesh, "top")
    with torch.no_grad():
        clamped, bottom = turned.trial.value(top), turned.trial.value(points_on(mesh, "bottom"))
    torch.testing.assert_close(clamped, torch.stack([0 * top[:, 2], 0 * top[:, 2], top[:, 2] / 10], 1), rtol=0, atol=1e-15)
    assert float(bottom[:, 2].abs().max()) <= 1e-15
    edge = torch.tensor([[math.cos(ANGLE) - math.sin(ANGLE), math.sin(ANGLE) + math.cos(ANGLE), z] for z in (0.1, 0.5, 0.9)],
                        dtype=F64)  # the turned corner (1, 1): on east and north
    with torch.no_grad():
        u = turned.trial.value(edge)
    for face in ("east", "north"):
        assert float((u @ torch.tensor(mesh.planes[face].normal, dtype=F64)).abs().max()) <= 1e-12 * float(u.abs().max())


def interior(assembly, count: int = 6) -> torch.Tensor:
    tetrahedra = assembly.domain.mesh.vertices[assembly.domain.mesh.tetrahedra[:count]]
    return torch.as_tensor(tetrahedra.mean(1) * 0.7 + tetrahedra[:, 0] * 0.3)


@pytest.mark.parametrize("which", ["sector", "turned"])
def test_gradient_and_parameter_jacobian_agree_with_autograd(which, request):
    """``grad u`` is autograd's gradient of ``u``; the rows ``d(u, grad u)/dtheta`` are autograd's
    derivatives of the trial function's own outputs."""
    assembly = request.getfixturevalue(which)
    trial, x = assembly.trial, interior(assembly)
    u, grad_u = trial(x)
    xr = x.clone().requires_grad_(True)
    value = trial.value(xr)
    rows = torch.stack([torch.autograd.grad(value[:, k].sum(), xr, retain_graph=True)[0] for k in range(3)], 1)
    torch.testing.assert_close(grad_u, rows, rtol=1e-12, atol=1e-12 * float(grad_u.detach().abs().max()))
    numbers = torch.cat([u, grad_u.reshape(len(x), 9)], 1)  # row order of parameter_jacobian: u_k, then du_k/dx_j
    parameters = trial.parameters()
    expected = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(number, parameters, retain_graph=True)])
                            for number in numbers.reshape(-1)]).reshape(len(x), 12, -1)
    actual = trial.parameter_jacobian(x)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12 * float(expected.abs().max()))


def wedge(tmp_path, degrees: float) -> str:
    """A prism over the triangle (0, 0), (1, 0), (cos a, sin a), 0 <= z <= 1 (three tetrahedra, no
    tags), with rollers on its faces y = 0 and the plane at angle a (selected): they meet on the z axis."""
    a = math.radians(degrees)
    base = np.array([[0, 0], [1, 0], [math.cos(a), math.sin(a)]])
    points = np.concatenate([np.c_[base, np.zeros(3)], np.c_[base, np.ones(3)]])
    tetrahedra = np.array([[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]])
    for t in tetrahedra:  # every one positively oriented
        if np.linalg.det(points[t[1:]] - points[t[0]]) < 0:
            t[[1, 2]] = t[[2, 1]]
    path = tmp_path / "wedge.vtu"
    meshio.write(path, meshio.Mesh(points, [("tetra", tetrahedra)]))
    return textwrap.dedent(f"""
        name = "wedge"
        [domain]
        type = "mesh"
        file = "{path}"
        [[domain.select]]
        type = "plane"
        name = "y0"
        point = [0, 0, 0]
        normal = [0, 1, 0]
        [[domain.select]]
        type = "plane"
        name = "slant"
        point = [0, 0, 0]
        normal = [{-math.sin(a)}, {math.cos(a)}, 0]
        [pde]
        type = "elasticity"
        E = 1.0
        nu = 0.3
        [[bc]]
        type = "roller"
        on = ["y0", "slant"]
        [quadrature]
        rule = "simplex"
        [quadrature.boundary]
        rule = "simplex"
        [quadrature.finish]
        rule = "simplex"
        [quadrature.evaluation]
        rule = "simplex"
        [exact]
        u = ["0", "0", "0"]
        """)


def test_rollers_meeting_at_another_angle_than_90_degrees_are_refused(tmp_path):
    error = error_of(wedge(tmp_path, 60.0))
    assert error.key == "bc[0].on[1]" and error.line is not None
    assert "the roller faces 'slant' and 'y0' meet at 60.0 degrees; rollers may meet only at right angles" in error.reason


def test_clamp_data_must_be_tangent_to_an_oblique_roller(tmp_path):
    text = rotated_cube(tmp_path).replace('value = ["0", "0", "z/10"]', 'value = ["x/10", "0", "z/10"]')
    error = error_of(text)
    assert error.key == "bc[1].value" and "component normal to the roller face 'east' is not 0" in error.reason


def test_a_curved_roller_face_is_refused():
    text = (REPO / "problems" / "thick_cylinder_sector.toml").read_text().replace('on = ["y0", "cut", "bottom", "top"]',
                                                                                    'on = ["y0", "cut", "inner", "top"]')
    text = text.replace('on = ["inner", "outer"]', 'on = ["outer"]').replace('file = "meshes/', f'file = "{REPO}/problems/meshes/')
    error = error_of(text)
    assert error.key == "bc[0].on[2]" and "a roller needs a planar face, and 'inner' is not one" in error.reason


#: a short schedule of the sector: 300 Adam and 5 ENGD steps (measured: relative L2 2.9e-3,
#: energy norm 3.2e-2 in 21 s on one thread; with the cut left traction-free, which frees a rigid
#: rotation about z, the relative L2 error is 1.3e7)
SHORT = {"train.phase[0].steps": 300, "train.phase[1].steps": 5, "train.max_time": 0, "train.eval_every": 10**6,
         "train.checkpoint_every": 10**6}


def test_the_sector_converges_on_a_short_schedule(tmp_path):
    _, summary = solve_bundled(tmp_path, "thick_cylinder_sector", SHORT)
    assert summary["steps"] == {"adam": 300, "engd": 5}
    assert summary["rel_l2"] <= 1e-2 and summary["rel_energy"] <= 0.1, summary
