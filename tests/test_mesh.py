"""Mesh domains: the bundled meshes' geometry, tags and normals, distance functions, one-line
errors for bad meshes, and the mesh path of a problem file."""

from __future__ import annotations

import math
import textwrap

import meshio
import numpy as np
import pytest
import torch

from conftest import REPO, error_of
from vpinn.geometry.mesh import MeshError, read_mesh
from vpinn.geometry.distance import TriangleDistance
from vpinn.geometry.mesh_domain import MeshDomain
from vpinn.problem import load_problem

MESHES = REPO / "problems" / "meshes"
F64 = torch.float64


def boundary_flux_of_x(mesh) -> float:
    """``sum over the boundary of (x . n) dA`` = 3 V by the divergence theorem if every normal points out."""
    total = 0.0
    for face, triangles in mesh.faces.items():
        centroids = mesh.vertices[triangles].mean(1)
        corners = mesh.vertices[triangles]
        cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]) / 2
        total += float((centroids * cross).sum())
    return total


def test_cube_mesh_is_the_unit_cube():
    mesh = read_mesh(MESHES / "cube.msh")
    assert set(mesh.faces) == {"xmin", "xmax", "ymin", "ymax", "zmin", "zmax"}
    assert mesh.volumes.sum() == pytest.approx(1.0, abs=1e-12) and (mesh.volumes > 0).all()
    for face, plane in mesh.planes.items():
        assert mesh.area(face) == pytest.approx(1.0, abs=1e-12)
        assert plane.supporting and plane.axis == "xyz".index(face[0])
        assert plane.normal[plane.axis] == (1.0 if face.endswith("max") else -1.0)
    assert boundary_flux_of_x(mesh) == pytest.approx(3.0, abs=1e-12)


def test_hollow_sphere_mesh_within_its_geometric_error():
    """Flat triangles through points of the spheres: areas and volume fall short of the sphere's by
    about (h/R)^2/4 at most, with h = 0.45 the mesh size (measured: inner -4.0%, outer -1.0%,
    volume -1.1%)."""
    mesh = read_mesh(MESHES / "hollow_sphere.msh")
    h = 0.45
    for face, radius in (("inner", 1.0), ("outer", 2.0)):
        exact = 4 * math.pi * radius**2
        deficit = 1 - mesh.area(face) / exact
        assert 0 < deficit < (h / radius) ** 2 / 4, (face, deficit)
        assert np.allclose(np.linalg.norm(mesh.vertices[np.unique(mesh.faces[face])], axis=1), radius, atol=1e-6)
    exact_volume = 4 / 3 * math.pi * 7
    assert 0 < 1 - mesh.volumes.sum() / exact_volume < (h / 2) ** 2 / 4 * (32 / 28)
    assert boundary_flux_of_x(mesh) == pytest.approx(3 * mesh.volumes.sum(), rel=1e-12)
    assert mesh.planes == {}


def test_thick_cylinder_mesh_within_its_geometric_error():
    """Polygonal circles of edge h = 0.2: the curved areas fall short by about (h/R)^2/24 at most
    (measured: inner -0.12%, outer -0.03%); the planar faces are planes normal to axes."""
    mesh = read_mesh(MESHES / "thick_cylinder.msh")
    assert set(mesh.faces) == {"inner", "outer", "x0", "y0", "bottom", "top"}
    for face, radius in (("inner", 1.0), ("outer", 2.0)):
        deficit = 1 - mesh.area(face) / (math.pi * radius / 2)
        assert 0 < deficit < (0.2 / radius) ** 2 / 24, (face, deficit)
    assert mesh.area("x0") == pytest.approx(1.0, abs=1e-12) and mesh.area("y0") == pytest.approx(1.0, abs=1e-12)
    assert 0 < 1 - mesh.area("bottom") / (3 * math.pi / 4) < (0.2 / 2) ** 2 / 24 * (4 / 3) + 0.2**2 / 24 / 3
    assert {f: (p.axis, p.supporting) for f, p in mesh.planes.items()} == {
        "x0": (0, True), "y0": (1, True), "bottom": (2, True), "top": (2, True)}
    assert boundary_flux_of_x(mesh) == pytest.approx(3 * mesh.volumes.sum(), rel=1e-12)


def points_on(mesh, face: str, count: int = 7) -> torch.Tensor:
    """Random points on every triangle of a face (float64)."""
    corners = torch.as_tensor(mesh.vertices[mesh.faces[face]])
    weights = torch.distributions.Dirichlet(torch.ones(3, dtype=F64)).sample((count, len(corners)))
    return torch.einsum("ntk,tkj->ntj", weights, corners).reshape(-1, 3)


@pytest.mark.parametrize("name, faces", [("hollow_sphere", ("inner",)), ("cube", ("xmin", "ymax", "zmin")),
                                         ("thick_cylinder", ("inner", "x0")), ("hollow_sphere", ("inner", "outer"))])
def test_distance_vanishes_on_its_faces_and_is_positive_inside(name, faces):
    domain = MeshDomain(read_mesh(MESHES / f"{name}.msh"))
    distance = domain.distance(faces)
    torch.manual_seed(0)
    for face in faces:
        assert float(distance(points_on(domain.mesh, face))[0].abs().max()) <= 1e-10
    interior = torch.as_tensor(domain.mesh.vertices[domain.mesh.tetrahedra].mean(1))
    value, grad = distance(interior)
    assert float(value.min()) > 0 and 0.9 < float(value.max()) <= 1.0 + 1e-12
    # the gradient against central differences
    x, step = interior[:20], 1e-6
    columns = [(distance(x + step * e)[0] - distance(x - step * e)[0]) / (2 * step) for e in torch.eye(3, dtype=F64)]
    assert torch.allclose(grad[:20], torch.stack(columns, 1), atol=1e-7)


def test_distance_of_curved_face_is_about_the_distance_near_it():
    """Near the triangles the R-equivalence is the Euclidean distance to first order: along a
    normal of the inner sphere, value / height tends to a constant (the normalisation)."""
    domain = MeshDomain(read_mesh(MESHES / "hollow_sphere.msh"))
    distance, mesh = domain.distance(("inner",)), domain.mesh
    corners = mesh.vertices[mesh.faces["inner"][0]]
    centre, normal = corners.mean(0), -mesh.normals("inner")[0]  # into the shell
    heights = np.array([1e-6, 1e-5, 1e-4])
    values = distance(torch.as_tensor(centre + heights[:, None] * normal))[0].numpy()
    slopes = values / heights
    assert np.allclose(slopes, slopes[0], rtol=1e-3) and slopes[0] > 0


def test_distance_to_one_triangle_is_the_euclidean_distance():
    """One triangle: the R-equivalence is the distance itself, in the face, edge and corner
    regions, with gradient (x - c)/|x - c| (c the closest point)."""
    triangle = TriangleDistance(np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]]))
    x = torch.tensor([[0.2, 0.2, 0.5], [0.5, -1, 0.3], [2, 0, 1], [1, 1, 0], [-0.5, 2, 0]], dtype=F64)
    closest = torch.tensor([[0.2, 0.2, 0], [0.5, 0, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 1, 0]], dtype=F64)
    value, grad = triangle(x)
    exact = (x - closest).norm(dim=1)
    assert torch.allclose(value, exact, rtol=1e-14) and torch.allclose(grad, (x - closest) / exact[:, None], atol=1e-14)


@pytest.mark.parametrize("pairs", [997, 101])  # chunks of 6 points; of 1 point against 101 + 53 triangles
def test_distance_is_the_same_in_chunks_and_in_float32(pairs):
    domain = MeshDomain(read_mesh(MESHES / "hollow_sphere.msh"))
    distance = domain.distance(("inner",))
    x = torch.as_tensor(domain.mesh.vertices[domain.mesh.tetrahedra].mean(1))
    value, grad = distance(x)
    small = type(distance.factors[0])(domain.mesh.vertices[domain.mesh.faces["inner"]], pairs=pairs)
    v, g = small(x[:300])
    assert torch.allclose(v * distance.scale, value[:300], rtol=1e-12)
    assert torch.allclose(g * distance.scale, grad[:300], rtol=1e-10, atol=1e-14)
    v32, g32 = distance(x.float())
    assert torch.allclose(v32.double(), value, rtol=1e-5, atol=1e-6) and torch.allclose(g32.double(), grad, atol=1e-4)


# ------------------------------------------------------------------------------ one-line errors
TETS = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])
POINTS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], float)


def write_mesh(path, cells, points=POINTS, **data):
    meshio.write(path, meshio.Mesh(points, cells, **data), file_format="gmsh22", binary=False)
    return path


def tagged(path, extra_groups=()):
    """Two tetrahedra, the triangle z = 0 tagged ``bottom`` (and empty groups ``extra_groups``)."""
    field_data = {"bottom": np.array([2, 2]), "domain": np.array([1, 3])}
    field_data.update({name: np.array([10 + k, 2]) for k, name in enumerate(extra_groups)})
    return write_mesh(path, [("tetra", TETS), ("triangle", np.array([[0, 1, 2], [0, 1, 3]]))],
                      cell_data={"gmsh:physical": [np.array([1, 1]), np.array([2, 2])],
                                 "gmsh:geometrical": [np.array([1, 1]), np.array([2, 2])]},
                      field_data=field_data)


@pytest.mark.parametrize("case, message", [
    ("missing", "cannot read the mesh file"),
    ("no_tetrahedra", "has no (linear) tetrahedra"),
    ("mixed", "mixed cells: only linear tetrahedra are supported, the mesh also has hexahedron"),
    ("inverted", "1 inverted tetrahedra"),
    ("degenerate", "1 degenerate tetrahedra (volume ~0), the first is element 1"),
    ("internal", "tag 'bottom' has 1 triangles that are not on the boundary"),
    ("garbage", "meshio cannot read it"),
])
def test_bad_meshes_are_one_line(tmp_path, case, message):
    path = tmp_path / "bad.msh"
    if case == "no_tetrahedra":
        write_mesh(path, [("triangle", np.array([[0, 1, 2]]))])
    elif case == "mixed":
        hexahedron_points = np.concatenate([POINTS, np.random.default_rng(0).random((8, 3)) + 2])
        write_mesh(path, [("tetra", TETS), ("hexahedron", np.arange(5, 13)[None])], points=hexahedron_points)
    elif case == "inverted":
        write_mesh(path, [("tetra", np.array([[0, 1, 2, 3], [1, 3, 2, 4], [0, 1, 2, 4]]))],
                   points=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.3, 0.3, -1]], float))
    elif case == "degenerate":
        write_mesh(path, [("tetra", np.array([[0, 1, 2, 3], [0, 1, 2, 4]]))],
                   points=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], float))
    elif case == "internal":
        write_mesh(path, [("tetra", TETS), ("triangle", np.array([[1, 2, 3]]))],
                   cell_data={"gmsh:physical": [np.array([1, 1]), np.array([2])],
                              "gmsh:geometrical": [np.array([1, 1]), np.array([2])]},
                   field_data={"bottom": np.array([2, 2])})
    elif case == "garbage":
        path.write_text("this is not a mesh\n")
    with pytest.raises(MeshError) as info:
        read_mesh(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_cell_set_file_names_its_faces(tmp_path):
    """Abaqus-style cell sets (meshio ``cell_sets``) name boundary parts too; without tags the
    whole boundary is one part."""
    path = tmp_path / "sets.inp"
    meshio.write(path, meshio.Mesh(POINTS, [("tetra", TETS), ("triangle", np.array([[0, 1, 2]]))],
                                   cell_sets={"base": [np.array([], dtype=int), np.array([0])]}))
    mesh = read_mesh(path)
    assert list(mesh.faces) == ["base"] and mesh.area("base") == pytest.approx(0.5)
    meshio.write(tmp_path / "plain.vtu", meshio.Mesh(POINTS, [("tetra", TETS)]))
    plain = read_mesh(tmp_path / "plain.vtu")
    assert list(plain.faces) == ["boundary"] and len(plain.faces["boundary"]) == 6
    assert boundary_flux_of_x(plain) == pytest.approx(3 * plain.volumes.sum(), rel=1e-12)


def mesh_problem(mesh: str, bc: str, rule: str = 'rule = "simplex"') -> str:
    return textwrap.dedent(f"""
        name = "m"
        [domain]
        type = "mesh"
        file = "{mesh}"
        [pde]
        type = "poisson"
        source = "1"
        {bc}
        [quadrature]
        {rule}
        [quadrature.boundary]
        rule = "simplex"
        [quadrature.finish]
        rule = "simplex"
        [quadrature.evaluation]
        rule = "simplex"
        """)


def test_problem_file_errors_name_the_key(tmp_path):
    path = tagged(tmp_path / "part.msh", extra_groups=("lid",))
    dirichlet = '[[bc]]\ntype = "dirichlet"\non = ["{}"]'
    assert "domain.file: " in str(error_of(mesh_problem(tmp_path / "none.msh", "")))
    unknown = error_of(mesh_problem(path, dirichlet.format("botom")))
    assert "bc[0].on[0]: unknown face 'botom' of the mesh (did you mean 'bottom'?)" in str(unknown)
    assert "face 'lid' of the mesh" in str(error_of(mesh_problem(path, dirichlet.format("lid")))) 
    assert "an empty part" in str(error_of(mesh_problem(path, dirichlet.format("lid"))))
    wrong_rule = error_of(mesh_problem(path, dirichlet.format("bottom"), 'rule = "gauss"'))
    assert "quadrature.rule: a mesh domain takes rule = 'simplex', not 'gauss'" in str(wrong_rule)
    gridded = error_of(mesh_problem(path, dirichlet.format("bottom")) + "[output]\ngrid = [5, 5, 5]\n")
    assert "output.grid: a mesh domain writes its solution on its own mesh" in str(gridded)
    spec_path = tmp_path / "p.toml"
    spec_path.write_text(mesh_problem("part.msh", dirichlet.format("bottom")))
    spec = load_problem(spec_path)  # the mesh file is relative to the problem file
    assert spec.domain.file == str(path.resolve()) and spec.domain.faces == ("bottom", "lid")


def test_plane_distance_on_an_oblique_plane():
    from vpinn.geometry.distance import PlaneDistance

    normal = (0.6, 0.8, 0.0)
    distance = PlaneDistance(normal, 2.0, 4.0)
    x = torch.rand(10, 3, dtype=F64)
    value, grad = distance(x)
    assert torch.allclose(value, (2.0 - x @ torch.tensor(normal, dtype=F64)) / 4.0, rtol=1e-15)
    assert torch.allclose(grad, -torch.tensor(normal, dtype=F64).expand(10, 3) / 4.0)


def test_the_fingerprint_follows_the_mesh_contents_not_its_place(tmp_path):
    from vpinn.assemble import fingerprint
    from vpinn.problem import parse_problem

    dirichlet = '[[bc]]\ntype = "dirichlet"\non = ["bottom"]'
    first = tagged(tmp_path / "a.msh")
    moved = tmp_path / "elsewhere" / "a.msh"
    moved.parent.mkdir()
    moved.write_bytes(first.read_bytes())
    digest = lambda path: fingerprint(parse_problem(mesh_problem(path, dirichlet), "case.toml"))["[domain]"]  # noqa: E731
    assert digest(first) == digest(moved)
    edited = tagged(tmp_path / "b.msh", extra_groups=("lid",))
    assert digest(edited) != digest(first)


def test_thick_cylinder_sector_mesh_has_an_oblique_cut():
    """The 30-degree sector: ``y0`` and ``cut`` are planes of area 1 through the axis, ``cut``
    normal to no axis (outward normal (-sin 30, cos 30, 0)), both supporting."""
    mesh = read_mesh(MESHES / "thick_cylinder_sector.msh")
    assert set(mesh.faces) == {"inner", "outer", "y0", "cut", "bottom", "top"}
    assert mesh.area("y0") == pytest.approx(1.0, abs=1e-12) and mesh.area("cut") == pytest.approx(1.0, abs=1e-12)
    cut = mesh.planes["cut"]
    assert np.allclose(cut.normal, (-0.5, math.sqrt(3) / 2, 0), atol=1e-15) and cut.axis is None and cut.supporting
    assert cut.offset == pytest.approx(0.0, abs=1e-12)
    assert {f: p.axis for f, p in mesh.planes.items()} == {"y0": 1, "cut": None, "bottom": 2, "top": 2}
    assert boundary_flux_of_x(mesh) == pytest.approx(3 * mesh.volumes.sum(), rel=1e-12)
