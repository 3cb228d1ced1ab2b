"""``vpinn.load`` and ``run.py export``: round trips through meshio, CSV and NPZ equal direct
evaluation; a checkpoint whose tensors were on CUDA exports on the CPU; bad inputs are one line."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import meshio
import numpy as np
import pytest

import vpinn
from conftest import solve_bundled
from vpinn.commands import main
from vpinn.geometry.mesh import read_mesh

#: the bundled thick cylinder, shrunk to seconds: a few Adam steps on small rules
TINY = {"train.phase[0].steps": 5, "train.phase[1].steps": 0, "train.batch": 256, "train.max_time": 0,
        "quadrature.evaluation.order": 1, "quadrature.evaluation.refine": 0, "quadrature.refine": 0,
        "quadrature.boundary.refine": 0}


@pytest.fixture(scope="module")
def cylinder(tmp_path_factory) -> Path:
    """A checkpoint of a tiny run of problems/thick_cylinder.toml (elasticity on a mesh)."""
    directory, _ = solve_bundled(tmp_path_factory.mktemp("cylinder"), "thick_cylinder", TINY)
    return directory / "checkpoint.pt"


def export(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(["export", *map(str, arguments)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ELASTIC_FIELDS = {"displacement": 3, "strain": 6, "stress": 6, "von_mises": None,
                  "displacement_exact": 3, "error": 3, "error_magnitude": None}


def test_default_export_is_the_domains_own_mesh(cylinder, capsys, tmp_path):
    code, out, _ = export(capsys, cylinder, "--output", tmp_path / "own.vtu")
    assert code == 0 and "wrote" in out
    written = meshio.read(tmp_path / "own.vtu")
    mesh = read_mesh(Path(__file__).resolve().parent.parent / "problems" / "meshes" / "thick_cylinder.msh")
    assert np.array_equal(written.points, mesh.vertices) and np.array_equal(written.cells_dict["tetra"], mesh.tetrahedra)
    solution = vpinn.load(cylinder)
    direct = solution.fields(mesh.vertices)
    assert set(written.point_data) == set(ELASTIC_FIELDS) == set(direct)
    for name, width in ELASTIC_FIELDS.items():
        assert written.point_data[name].shape == ((len(mesh.vertices), width) if width else (len(mesh.vertices),))
        assert np.array_equal(written.point_data[name], direct[name])
    u, grad_u = solution.u(mesh.vertices[:5]), solution.grad_u(mesh.vertices[:5])
    assert u.shape == (5, 3) and grad_u.shape == (5, 3, 3) and np.array_equal(u, direct["displacement"][:5])


def test_default_export_writes_the_boundary_tractions(cylinder, capsys, tmp_path):
    """Beside the mesh, its tagged triangles with sigma n at their centroids: equal to direct
    evaluation, and the exact traction is -p n on the cavity (to the facets' tilt) and normal on
    the symmetry plane x = 0 (no shear there)."""
    code, out, _ = export(capsys, cylinder, "--output", tmp_path / "own.vtu")
    assert code == 0 and "(part 0 = bottom, 1 = inner, 2 = outer, 3 = top, 4 = x0, 5 = y0)" in out
    surface = meshio.read(tmp_path / "own_boundary.vtu")
    triangles = surface.cells_dict["triangle"]
    data = {name: values[0] for name, values in surface.cell_data.items()}
    assert data["traction"].shape == data["traction_exact"].shape == data["normal"].shape == (len(triangles), 3)
    centroids = surface.points[triangles].mean(1)
    direct = vpinn.load(cylinder).boundary_fields(centroids, data["normal"])
    assert np.array_equal(direct["traction"], data["traction"])
    inner, x0 = data["part"] == 1, data["part"] == 4
    pressure = -(data["traction_exact"][inner] * data["normal"][inner]).sum(1)
    assert np.allclose(pressure, 1.0, rtol=0.05)
    assert np.abs(data["traction_exact"][x0][:, 1:]).max() < 1e-12


def test_points_csv_grid_npz_and_xdmf_round_trips(cylinder, capsys, tmp_path):
    points = np.array([[1.2, 0.3, 0.5], [0.1, 1.5, 0.2], [1.0, 1.0, 0.9]])
    csv = tmp_path / "points.csv"
    csv.write_text("x, y, z\n" + "\n".join(", ".join(repr(float(v)) for v in p) for p in points) + "\n")
    solution = vpinn.load(cylinder)
    direct = solution.fields(points)
    code, _, err = export(capsys, cylinder, "--points", csv, "--format", "csv", "--output", tmp_path / "out.csv")
    assert code == 0, err
    table = np.genfromtxt(tmp_path / "out.csv", delimiter=",", names=True)
    assert np.array_equal(np.stack([table["x"], table["y"], table["z"]], 1), points)
    assert np.array_equal(np.stack([table[f"stress_{k}"] for k in range(6)], 1), direct["stress"])
    assert np.array_equal(table["von_mises"], direct["von_mises"])
    assert export(capsys, cylinder, "--grid", 4, "--format", "npz", "--output", tmp_path / "grid.npz")[0] == 0
    archive = np.load(tmp_path / "grid.npz")
    assert archive["points"].shape == (64, 3) and archive["cells_hexahedron"].shape == (27, 8)
    assert np.array_equal(archive["displacement"], solution.fields(archive["points"])["displacement"])
    assert export(capsys, cylinder, "--points", csv, "--format", "xdmf", "--output", tmp_path / "p.xdmf")[0] == 0
    assert np.array_equal(meshio.read(tmp_path / "p.xdmf").point_data["von_mises"], direct["von_mises"])


def on_cuda(source: Path, target: Path) -> Path:
    """``source`` rewritten as if every tensor had been saved from ``cuda:0`` (the storage
    location recorded in the pickle); loading it without ``map_location`` fails on this machine."""
    with zipfile.ZipFile(source) as archive:
        names = archive.namelist()
        contents = {name: archive.read(name) for name in names}
    pickle = next(n for n in names if n.endswith("data.pkl"))
    assert b"X\x03\x00\x00\x00cpu" in contents[pickle]
    contents[pickle] = contents[pickle].replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in names:
            archive.writestr(name, contents[name])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    (target.parent / "problem.toml").write_text((source.parent / "problem.toml").read_text())
    return target


def test_a_checkpoint_from_cuda_exports_on_the_cpu(cylinder, capsys, tmp_path):
    import torch

    moved = on_cuda(cylinder, tmp_path / "gpu" / "checkpoint.pt")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(moved, weights_only=True)
    code, out, err = export(capsys, moved, "--format", "npz")
    assert code == 0, err
    exported = np.load(tmp_path / "gpu" / "export.npz")
    assert np.array_equal(exported["displacement"], vpinn.load(cylinder).fields(exported["points"])["displacement"])


@pytest.mark.parametrize("text, message", [
    ("x,y,z\n1,2,3\n1,2\n", "points.csv:3: 2 values, a point has 3"),
    ("1,2,3\n1,2,abc\n", "points.csv:2: not three numbers x, y, z"),
    ("a,b,c\n1,2,3\n", "points.csv:1: a header must name the columns x, y, z"),
    ("# nothing\n", "points.csv: no points"),
    ("1,2,nan\n", "points.csv:1: not finite"),
])
def test_malformed_points_are_one_line(cylinder, capsys, tmp_path, text, message):
    path = tmp_path / "points.csv"
    path.write_text(text)
    code, out, err = export(capsys, cylinder, "--points", path)
    assert code == 2 and message in err and err.count("\n") == 1 and not out


def test_bad_export_inputs_are_one_line(cylinder, capsys, tmp_path):
    code, _, err = export(capsys, tmp_path / "nothing.pt")
    assert code == 2 and "no checkpoint at" in err and err.count("\n") == 1
    (tmp_path / "bad.msh").write_text("not a mesh\n")
    code, _, err = export(capsys, cylinder, "--mesh", tmp_path / "bad.msh")
    assert code == 2 and err.startswith("error: --mesh ") and err.count("\n") == 1
    code, _, err = export(capsys, cylinder, "--grid", 1)
    assert code == 2 and "at least 2 nodes" in err
