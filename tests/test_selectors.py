"""Plane and box selectors name the faces of an untagged mesh: the bundled cube written without
its tags gets the same six faces back (the same triangles, areas 1, the same planes), and a
Poisson problem assembled on them is the tagged one's; bad selectors are one-line errors."""

from __future__ import annotations

import textwrap

import meshio
import numpy as np
import pytest
import torch

from conftest import REPO, error_of
from vpinn.assemble import assemble
from vpinn.geometry.mesh import read_mesh, triangle_keys
from vpinn.problem import load_problem, parse_problem

CUBE = REPO / "problems" / "meshes" / "cube.msh"
F64 = torch.float64

#: the cube's faces by planes (normals of either sign), zmax by a box
SELECTORS = textwrap.dedent("""
    [[domain.select]]
    type = "plane"
    name = "xmin"
    point = [0, 0.5, 0.5]
    normal = [-1, 0, 0]
    [[domain.select]]
    type = "plane"
    name = "xmax"
    point = [1, 0, 0]
    normal = [2, 0, 0]
    [[domain.select]]
    type = "plane"
    name = "ymin"
    point = [0, 0, 0]
    normal = [0, 1, 0]
    [[domain.select]]
    type = "plane"
    name = "ymax"
    point = [0, 1, 0]
    normal = [0, 1, 0]
    tolerance = 1e-6
    [[domain.select]]
    type = "plane"
    name = "zmin"
    point = [0.3, 0.3, 0]
    normal = [0, 0, -1]
    [[domain.select]]
    type = "box"
    name = "zmax"
    lower = [0, 0, 1]
    upper = [1, 1, 1]
    """)


def problem(mesh, select: str = SELECTORS, on: str = '["xmin", "ymax", "zmax"]') -> str:
    """Poisson with u* = x + y^2 z, Dirichlet on three faces, Neumann ("auto") on two."""
    return textwrap.dedent(f"""
        name = "selected"
        [domain]
        type = "mesh"
        file = "{mesh}"
        """) + select + textwrap.dedent(f"""
        [pde]
        type = "poisson"
        [[bc]]
        type = "dirichlet"
        on = {on}
        value = "auto"
        [[bc]]
        type = "neumann"
        on = ["xmax", "zmin"]
        value = "auto"
        [exact]
        u = "x + y**2*z"
        [quadrature]
        rule = "simplex"
        [quadrature.boundary]
        rule = "simplex"
        [quadrature.finish]
        rule = "simplex"
        [quadrature.evaluation]
        rule = "simplex"
        [model]
        width = 8
        depth = 1
        [train]
        dtype = "float64"
        """)


@pytest.fixture
def untagged(tmp_path):
    """The bundled cube's tetrahedra as a VTU file without any tags."""
    mesh = read_mesh(CUBE)
    path = tmp_path / "cube.vtu"
    meshio.write(path, meshio.Mesh(mesh.vertices, [("tetra", mesh.tetrahedra)]))
    assert list(read_mesh(path).faces) == ["boundary"]
    return path


def test_selected_faces_are_the_tagged_faces(untagged):
    tagged = read_mesh(CUBE)
    selected = parse_problem(problem(untagged), "case.toml").domain.mesh()
    assert sorted(selected.faces) == sorted(tagged.faces)  # every triangle selected: no "boundary" left
    count = len(tagged.vertices)
    for face, triangles in tagged.faces.items():
        assert np.array_equal(np.sort(triangle_keys(selected.faces[face], count)), np.sort(triangle_keys(triangles, count)))
        assert selected.area(face) == pytest.approx(1.0, abs=1e-12)
        assert np.allclose(selected.normals(face), tagged.normals(face), atol=1e-15)  # outward, as tagged
        plane, reference = selected.planes[face], tagged.planes[face]
        assert (plane.normal, plane.axis, plane.supporting) == (reference.normal, reference.axis, reference.supporting)


def test_the_rest_of_an_untagged_boundary_stays_boundary(untagged):
    """Two selectors: ``boundary`` keeps the other four faces (area 4, not planar)."""
    two = SELECTORS[:SELECTORS.index('[[domain.select]]\ntype = "plane"\nname = "ymin"')]
    mesh = parse_problem(problem(untagged, two, on='["xmin", "boundary"]').replace('on = ["xmax", "zmin"]', 'on = ["xmax"]'),
                         "case.toml").domain.mesh()
    assert list(mesh.faces) == ["xmin", "xmax", "boundary"]
    assert mesh.area("boundary") == pytest.approx(4.0, abs=1e-12) and "boundary" not in mesh.planes


def test_a_problem_on_selected_faces_assembles_as_on_tags(untagged, tmp_path):
    """The same rules (sizes, points, weights), the same trial function at random points."""
    on_tags, on_selected = (assemble(parse_problem(problem(path, select), "case.toml"), torch.device("cpu"))
                            for path, select in ((CUBE, ""), (untagged, SELECTORS)))
    for a, b in zip(on_tags.terms, on_selected.terms):
        index = torch.arange(a.rule.size)
        assert a.rule.size == b.rule.size
        torch.testing.assert_close(a.rule.take(index, F64).weights.sum(), b.rule.take(index, F64).weights.sum(), rtol=1e-14, atol=0)
    x = torch.rand(200, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for u, v in zip(on_tags.trial(x), on_selected.trial(x)):
            torch.testing.assert_close(u, v, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("old, new, key, words", [
    ("normal = [0, 1, 0]\n", "normal = [0, 0, 0]\n", "domain.select[2].normal", "has zero length"),
    ('name = "ymax"', 'name = "xmin"', "domain.select[3].name", "'xmin' is already a face of the mesh"),
    ('name = "ymax"', 'name = "boundary"', "domain.select[3].name", "'boundary' is already a face of the mesh"),
    ("point = [0, 1, 0]", "point = [0, 1.5, 0]", "domain.select[3]", "selects no boundary triangle (tolerance 1e-06"),
    ("lower = [0, 0, 1]", "lower = [0, 0, 0]", "domain.select[5]", "'zmax' shares 90 triangles with the face 'xmin'"),
    ("tolerance = 1e-6", "tolerance = 0", "domain.select[3].tolerance", "must be positive"),
])
def test_bad_selectors_are_one_line_errors_at_their_key(untagged, old, new, key, words):
    text = problem(untagged)
    assert old in text
    error = error_of(text.replace(old, new, 1))
    assert error.key == key and words in error.reason, error
    assert error.line is not None


def test_a_selector_clashing_with_a_tag(tmp_path):
    """On a tagged mesh selectors add faces: a tag's name, or its triangles, are refused."""
    select = '[[domain.select]]\ntype = "plane"\nname = "{}"\npoint = [0, 0, 0]\nnormal = [1, 0, 0]\n'
    assert "'xmin' is already a face of the mesh" in str(error_of(problem(CUBE, select.format("xmin"))))
    assert "shares 90 triangles with the face 'xmin'" in str(error_of(problem(CUBE, select.format("left"))))


def test_selectors_are_part_of_the_fingerprint(untagged, tmp_path):
    from vpinn.assemble import fingerprint

    path = tmp_path / "p.toml"
    path.write_text(problem(untagged))
    other = load_problem(path, {"domain.select[3].tolerance": 2e-6})
    assert fingerprint(load_problem(path))["[domain]"] != fingerprint(other)["[domain]"]
