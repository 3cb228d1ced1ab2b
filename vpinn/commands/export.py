"""``run.py export``: a saved checkpoint evaluated on a mesh, a grid or given points, written out.

    python run.py export results/<name>/checkpoint.pt [--mesh FILE | --grid N | --points FILE.csv]
                         [--format vtu|xdmf|csv|npz] [--output PATH] [--device cpu|cuda]

Where: ``--mesh`` any file meshio reads (its points and cells are kept), ``--grid N`` a grid of
N nodes per direction on the domain's parameter cube (a mesh domain: on its bounding box, where
points outside the domain show the network's extension), ``--points`` a CSV file of points
(:mod:`vpinn.export.points`).  Without any of them, a mesh domain is written on its own mesh (and,
as VTU or XDMF, its tagged boundary triangles with the flux or traction at their centroids beside
it, ``<output>_boundary.vtu``) and other domains on the grid of ``[output] grid``.  The fields are those of ``vpinn.load``'s
:meth:`~vpinn.solution.Solution.fields` (with the exact solution, also ``<primary>_exact`` and
``error``), evaluated in chunks on ``--device`` (CPU by default, whatever device trained it).
The output goes to ``--output`` or beside the checkpoint as ``export.<format>``, atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vpinn.atomic import atomic_path
from vpinn.commands.arguments import device_name, positive_count
from vpinn.errors import VpinnError
from vpinn.export.grid import FORMATS, Cells, grid_points, hexahedra, solution_cells, write_fields
from vpinn.export.points import read_points
from vpinn.geometry.maps import BoxVolumeMap
from vpinn.geometry.mesh import read_quietly
from vpinn.geometry.mesh_domain import MeshDomain
from vpinn.solution import Solution, load

DESCRIPTION = ("Evaluate a saved checkpoint on its own mesh, another mesh, a grid or given points and write "
               "the fields (VTU, XDMF, CSV or NPZ).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint.pt written by run.py solve")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--mesh", metavar="FILE", help="evaluate at the points of this mesh (any file meshio reads)")
    where.add_argument("--grid", type=positive_count, metavar="N", help="a grid of N nodes per direction (N >= 2)")
    where.add_argument("--points", metavar="FILE.csv", help="evaluate at these points (lines x, y, z)")
    parser.add_argument("--format", choices=FORMATS, default="vtu", help="output format (default: vtu)")
    parser.add_argument("--output", metavar="PATH", help="output file (default: export.<format> beside the checkpoint)")
    parser.add_argument("--device", help="cpu (default) or cuda")
    parser.add_argument("--chunk", type=positive_count, default=65536, help="points per evaluation chunk")


def target(solution: Solution, args: argparse.Namespace) -> tuple[np.ndarray, Cells | None]:
    """The points (n, 3) and cells to evaluate on (see the module docstring)."""
    domain = solution.assembly.domain
    if args.mesh:
        return _mesh(args.mesh)
    if args.points:
        return read_points(args.points), None
    if args.grid is not None:
        if args.grid < 2:
            raise VpinnError(f"--grid {args.grid}: a grid needs at least 2 nodes per direction")
        shape = (args.grid,) * 3
        mapping = BoxVolumeMap(domain.lower, domain.upper) if isinstance(domain, MeshDomain) else domain.volume_map()
        return grid_points(mapping, shape), [("hexahedron", hexahedra(shape))]
    return solution_cells(domain, solution.spec.output.grid)


def _mesh(path: str) -> tuple[np.ndarray, Cells]:
    try:
        mesh = read_quietly(path, VpinnError)
    except VpinnError as err:
        raise VpinnError(f"--mesh {err}") from None
    points = np.asarray(mesh.points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise VpinnError(f"--mesh {path}: points of shape {points.shape}, not (n, 3)")
    if points.shape[1] == 2:
        points = np.concatenate([points, np.zeros((len(points), 1))], axis=1)
    return points, [(block.type, block.data) for block in mesh.cells]


def write_boundary(path: Path, solution: Solution, domain: MeshDomain, file_format: str) -> None:
    """The mesh's tagged boundary triangles with cell data at their centroids: the physics'
    boundary fields (flux or traction, with the exact ones if known), the outward ``normal`` and
    the ``part`` (the index of the triangle's face among the mesh's faces, in the order ``run``
    prints them)."""
    mesh = domain.mesh
    names = list(mesh.faces)
    triangles = np.concatenate([mesh.faces[f] for f in names])
    normals = np.concatenate([mesh.normals(f) for f in names])
    part = np.concatenate([np.full(len(mesh.faces[f]), k) for k, f in enumerate(names)])
    centroids = mesh.vertices[triangles].mean(1)
    fields = {**solution.boundary_fields(centroids, normals), "normal": normals, "part": part}
    import meshio

    with atomic_path(path) as temporary:
        surface = meshio.Mesh(mesh.vertices, [("triangle", triangles)],
                              cell_data={name: [value] for name, value in fields.items()})
        if file_format == "xdmf":
            meshio.xdmf.write(temporary, surface, data_format="XML")
        else:
            meshio.write(temporary, surface, file_format=file_format)


def run(args: argparse.Namespace) -> int:
    solution = load(args.checkpoint, device_name(args.device), args.chunk)
    points, cells = target(solution, args)
    fields = solution.fields(points)
    output = Path(args.output) if args.output else Path(args.checkpoint).parent / f"export.{args.format}"
    write_fields(output, points, cells, fields, args.format)
    domain = solution.assembly.domain
    if isinstance(domain, MeshDomain) and not (args.mesh or args.points or args.grid) and args.format in ("vtu", "xdmf"):
        surface = output.with_name(f"{output.stem}_boundary{output.suffix}")
        write_boundary(surface, solution, domain, args.format)
        parts = ", ".join(f"{k} = {name}" for k, name in enumerate(domain.mesh.faces))
        print(f"{solution.spec.name}: boundary fields on {sum(map(len, domain.mesh.faces.values())):,} triangles "
              f"(part {parts}); wrote {surface}")
    errors = ""
    if "error" in fields:
        errors = f"; max |error| {np.abs(fields['error']).max():.3e}"
    print(f"{solution.spec.name}: {len(points):,} points, fields {', '.join(fields)}{errors}; wrote {output}")
    return 0
