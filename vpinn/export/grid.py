"""Solution fields on a structured grid, on a mesh or at points, written with meshio (VTU, XDMF),
as CSV or as NumPy ``.npz``.

On a mesh domain the solution is written on the mesh itself (its vertices and tetrahedra).  Otherwise the grid is a uniform grid of ``grid`` nodes per direction on the parameter cube, pushed through
the domain's volume map (for a box: a uniform grid of the box; for curved domains a curvilinear
grid that follows the domain).  The fields are the physics' derived fields of the network
(``u`` and ``grad_u`` for Poisson), and, where the exact solution is known, ``<primary>_exact``
and ``error = computed - exact`` (plus ``error_magnitude`` for vector fields).  Cells are VTK
hexahedra, so ParaView opens the files as an unstructured grid with point data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import meshio
import numpy as np
import torch

from vpinn.atomic import atomic_path
from vpinn.errors import VpinnWarning
from vpinn.geometry.maps import ParameterMap
from vpinn.geometry.mesh_domain import MeshDomain
from vpinn.physics.base import Physics, Trial

#: file formats of :func:`write_fields`
FORMATS = ("vtu", "xdmf", "csv", "npz")
Cells = list[tuple[str, np.ndarray]]


def grid_points(volume_map: ParameterMap, shape: tuple[int, int, int]) -> np.ndarray:
    """Nodes (n, 3) of a grid of ``shape`` nodes on the parameter cube, mapped; first axis fastest."""
    axes = [np.linspace(0.0, 1.0, n) for n in shape]
    w, v, u = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    params = torch.from_numpy(np.stack([u.ravel(), v.ravel(), w.ravel()], axis=1))
    return volume_map(params).points.numpy()


def hexahedra(shape: tuple[int, int, int]) -> np.ndarray:
    """Connectivity (cells, 8) of the hexahedral cells of a grid of ``shape`` nodes."""
    nx, ny, nz = shape
    i, j, k = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1), np.arange(nz - 1), indexing="ij")
    i, j, k = (a.transpose(2, 1, 0).ravel() for a in (i, j, k))
    node = lambda a, b, c: a + nx * (b + ny * c)  # noqa: E731
    return np.stack(
        [node(i, j, k), node(i + 1, j, k), node(i + 1, j + 1, k), node(i, j + 1, k),
         node(i, j, k + 1), node(i + 1, j, k + 1), node(i + 1, j + 1, k + 1), node(i, j + 1, k + 1)],
        axis=1,
    )


def solution_cells(domain, shape: tuple[int, int, int]) -> tuple[np.ndarray, Cells]:
    """Where a solve writes its solution: a mesh domain's vertices and tetrahedra, else the nodes
    and hexahedra of a grid of ``shape`` nodes on the domain's parameter cube."""
    if isinstance(domain, MeshDomain):
        return domain.mesh.vertices, [("tetra", domain.mesh.tetrahedra)]
    return grid_points(domain.volume_map(), shape), [("hexahedron", hexahedra(shape))]


def evaluate_fields(physics: Physics, trial: Trial, points: np.ndarray, chunk: int, device, dtype) -> dict[str, np.ndarray]:
    """Derived fields (and exact/error fields) at ``points`` (n, 3), evaluated in chunks."""
    primary = physics.primary
    pieces: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(points), chunk):
            x = torch.as_tensor(points[start : start + chunk], dtype=dtype, device=device)
            fields = physics.derived(x, *trial(x))
            if physics.exact is not None:
                exact = physics.exact(x)
                fields[f"{primary}_exact"] = physics.derived(x, *exact)[primary]
                fields["error"] = fields[primary] - fields[f"{primary}_exact"]
                if fields["error"].dim() == 2:
                    fields["error_magnitude"] = fields["error"].norm(dim=1)
            for name, value in fields.items():
                pieces.setdefault(name, []).append(value.detach().double().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in pieces.items()}


def columns(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fields as named columns (n,): a vector or tensor field ``f`` (n, k) becomes ``f_0 ... f_{k-1}``."""
    out = {}
    for name, value in fields.items():
        value = value.reshape(len(value), -1)
        for k in range(value.shape[1]):
            out[name if value.shape[1] == 1 else f"{name}_{k}"] = value[:, k]
    return out


def write_fields(path: str | Path, points: np.ndarray, cells: Cells | None, fields: dict[str, np.ndarray],
                 file_format: str = "vtu") -> None:
    """Write points (n, 3), cells (None: the points alone, as VTK vertices) and point fields
    (each (n,) or (n, k)), atomically.

    ``vtu``/``xdmf``: a meshio mesh with point data; ``csv``: columns ``x, y, z`` and one per
    field component (``grad_u_0`` ...); ``npz``: arrays ``points``, the cells by type and each field.
    Warns (one line) about values that are NaN or infinite, which a viewer would show without comment."""
    bad = {name: int(np.count_nonzero(~np.isfinite(values))) for name, values in fields.items()}
    if any(bad.values()):
        counts = ", ".join(f"{count:,} of {fields[name].size:,} values of {name}" for name, count in bad.items() if count)
        warnings.warn(f"{path}: {counts} are NaN or infinite", VpinnWarning, stacklevel=2)
    with atomic_path(path) as temporary:
        if file_format == "csv":
            table = {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2], **columns(fields)}
            header = ",".join(table)
            np.savetxt(temporary, np.stack(list(table.values()), 1), delimiter=",", header=header, comments="",
                       fmt="%.17g")
        elif file_format == "npz":
            with open(temporary, "wb") as handle:
                np.savez(handle, points=points, **{f"cells_{kind}": c for kind, c in cells or []}, **fields)
        else:
            cells = cells or [("vertex", np.arange(len(points))[:, None])]
            mesh = meshio.Mesh(points, cells, point_data=fields)
            if file_format == "xdmf":
                meshio.xdmf.write(temporary, mesh, data_format="XML")
            else:
                meshio.write(temporary, mesh, file_format=file_format)
