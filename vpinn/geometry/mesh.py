"""Tetrahedral mesh domains read with meshio: the volume, the tagged boundary parts, their planes.

``read_mesh(path, scale, translate)`` reads any file meshio reads that holds linear tetrahedra
(gmsh ``.msh``, ``.vtu``, ``.xdmf``, Abaqus ``.inp``, ...), maps it by ``x -> scale * x +
translate`` (the problem's length units) and finds its boundary: the triangles that bound one
tetrahedron only.  Boundary parts are the file's tags on triangles, gmsh physical groups (named
in ``field_data``) or meshio ``cell_sets``; a file without tagged triangles has one part,
``boundary``.  Every boundary triangle is oriented so that its normal points out of the domain
(away from the tetrahedron it bounds).

Every flaw is one :class:`MeshError` line: a missing or unreadable file, no tetrahedra, volume
cells other than linear tetrahedra, inverted or degenerate elements, tagged triangles that are
not on the boundary.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vpinn.errors import VpinnError

#: volume cell types of meshio that vpinn does not integrate (only linear tetrahedra)
OTHER_VOLUME_CELLS = ("tetra10", "hexahedron", "hexahedron20", "hexahedron27", "wedge", "wedge15", "pyramid",
                      "pyramid13")
#: vertex indices of a triangle are packed into one int64 key: fewer than 2^21 vertices
MAX_VERTICES = 2**21
#: the one part of a mesh file without tagged triangles: its whole boundary
UNTAGGED = "boundary"
#: relative tolerance (of the mesh's diameter) of "on a plane"
PLANE_TOLERANCE = 1e-9


class MeshError(VpinnError):
    """A mesh file cannot serve as a domain; the message says why in one line."""


@dataclass(frozen=True, eq=False)
class Plane:
    """A boundary part lying in the plane ``normal . x = offset`` (``normal`` outward, unit).

    ``supporting`` is True when the whole domain lies behind it (``normal . x <= offset``), so
    the distance to the plane vanishes on the mesh only on that plane; ``depth`` is the domain's
    largest distance from it; ``axis`` is the coordinate axis of the normal, or None."""

    normal: tuple[float, float, float]
    offset: float
    supporting: bool
    depth: float
    axis: int | None


@dataclass(frozen=True, eq=False)
class Mesh:
    """A tetrahedral mesh: ``vertices`` (V, 3) float64, ``tetrahedra`` (E, 4) int64 (positively
    oriented), ``faces``: part name -> outward-oriented triangles (F, 3) int64."""

    vertices: np.ndarray
    tetrahedra: np.ndarray
    faces: dict[str, np.ndarray]
    planes: dict[str, Plane] = field(default_factory=dict)

    @property
    def volumes(self) -> np.ndarray:
        """Volume of each tetrahedron (E,)."""
        corners = self.vertices[self.tetrahedra]
        return np.linalg.det(corners[:, 1:] - corners[:, :1]) / 6

    def normals(self, face: str) -> np.ndarray:
        """Outward unit normals (F, 3) of the part's triangles."""
        return _triangle_normals(self.vertices, self.faces[face])[0]

    def area(self, face: str) -> float:
        """Area of a boundary part."""
        return float(_triangle_normals(self.vertices, self.faces[face])[1].sum())


def read_mesh(path: str | Path, scale: float = 1.0, translate: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Mesh:
    """The mesh in ``path``, scaled and moved; read once per file version (cached on the file's
    modification time, so an edited mesh is read again)."""
    path = Path(path)
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError as err:
        raise MeshError(f"{path}: cannot read the mesh file ({err.strerror})") from None
    return _read(str(path.resolve()), stamp, float(scale), tuple(float(t) for t in translate))


@functools.lru_cache(maxsize=8)
def _read(path: str, stamp: int, scale: float, translate: tuple[float, float, float]) -> Mesh:
    raw = read_quietly(path, MeshError)
    types = [block.type for block in raw.cells]
    others = sorted({t for t in types if t in OTHER_VOLUME_CELLS})
    if "tetra" not in types:
        found = ", ".join(sorted(set(types))) or "none"
        raise MeshError(f"{path}: the mesh has no (linear) tetrahedra (cells: {found})")
    if others:
        raise MeshError(f"{path}: mixed cells: only linear tetrahedra are supported, the mesh also has {', '.join(others)}")
    vertices = np.asarray(raw.points, dtype=np.float64)
    if vertices.shape[1] != 3:
        raise MeshError(f"{path}: points have {vertices.shape[1]} coordinates, not 3")
    if len(vertices) >= MAX_VERTICES:
        raise MeshError(f"{path}: {len(vertices):,} vertices; at most {MAX_VERTICES - 1:,} are supported")
    vertices = vertices * scale + np.asarray(translate)
    tetrahedra = np.concatenate([b.data for b in raw.cells if b.type == "tetra"]).astype(np.int64)
    tetrahedra = _oriented(path, vertices, tetrahedra)
    boundary = boundary_triangles(vertices, tetrahedra)
    tagged = _tagged_triangles(raw)
    faces = {name: _on_boundary(path, name, triangles, boundary, len(vertices)) for name, triangles in tagged.items()}
    if not any(len(t) for t in faces.values()):
        faces = {UNTAGGED: boundary[0]}
    return Mesh(vertices, tetrahedra, faces, {name: plane for name, tri in faces.items()
                                              if (plane := plane_of(vertices, tri)) is not None})


def read_quietly(path: str | Path, error: type[Exception]):
    """``meshio.read(path)``, its own messages silenced and every failure (meshio raises many
    types, and exits on a file no reader takes) turned into one line of ``error``."""
    import meshio  # imported here: meshio costs a noticeable start-up time, only meshes need it

    messages = io.StringIO()
    try:
        with contextlib.redirect_stdout(messages), contextlib.redirect_stderr(messages):
            return meshio.read(path)
    except (Exception, SystemExit) as err:
        first = (str(err).strip().splitlines() or [""])[0] or (messages.getvalue().strip().splitlines() or [""])[0]
        raise error(f"{path}: meshio cannot read it ({type(err).__name__}: {first})") from None


def _oriented(path: str, vertices: np.ndarray, tetrahedra: np.ndarray) -> np.ndarray:
    """Tetrahedra with positive volume: all negative ones are flipped (a file's convention), a
    mix of signs is an inverted element, a tiny volume a degenerate one."""
    corners = vertices[tetrahedra]
    signed = np.linalg.det(corners[:, 1:] - corners[:, :1]) / 6
    typical = np.median(np.abs(signed))
    degenerate = np.flatnonzero(np.abs(signed) <= 1e-10 * typical) if typical > 0 else np.arange(len(signed))
    if len(degenerate):
        raise MeshError(f"{path}: {len(degenerate)} degenerate tetrahedra (volume ~0), the first is element "
                        f"{degenerate[0]} with vertices {tetrahedra[degenerate[0]].tolist()}")
    negative = signed < 0
    if negative.all():
        return tetrahedra[:, [0, 2, 1, 3]]
    if negative.any():
        bad = np.flatnonzero(negative if negative.sum() <= len(negative) / 2 else ~negative)
        raise MeshError(f"{path}: {len(bad)} inverted tetrahedra (orientation opposite to the rest), the first is "
                        f"element {bad[0]} with vertices {tetrahedra[bad[0]].tolist()}")
    return tetrahedra


#: the faces of a positively oriented tetrahedron (0, 1, 2, 3), each ordered with an outward normal
TETRA_FACES = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])


def triangle_keys(triangles: np.ndarray, count: int) -> np.ndarray:
    """An integer key per triangle, the same for any order of its vertices."""
    s = np.sort(triangles, axis=1)
    return (s[:, 0] * count + s[:, 1]) * count + s[:, 2]


def boundary_triangles(vertices: np.ndarray, tetrahedra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boundary triangles (B, 3), outward oriented, sorted by their keys (B,)."""
    all_faces = tetrahedra[:, TETRA_FACES].reshape(-1, 3)
    keys = triangle_keys(all_faces, len(vertices))
    unique, first, counts = np.unique(keys, return_index=True, return_counts=True)
    once = first[counts == 1]  # np.unique sorts: these keys are in increasing order
    return all_faces[once], keys[once]


def _tagged_triangles(raw) -> dict[str, np.ndarray]:
    """Part name -> triangles (F, 3) from gmsh physical groups or meshio cell sets."""
    blocks = [(k, b) for k, b in enumerate(raw.cells) if b.type == "triangle"]
    physical = raw.cell_data.get("gmsh:physical")
    names = {int(v[0]): name for name, v in raw.field_data.items() if len(v) > 1 and int(v[1]) == 2}
    parts: dict[str, list[np.ndarray]] = {}
    if physical is not None and names:
        for tag, name in names.items():
            parts[name] = [block.data[np.asarray(physical[k]) == tag] for k, block in blocks]
    else:
        for name, per_block in raw.cell_sets.items():
            if not name.startswith("gmsh:"):
                parts[name] = [block.data[np.asarray(per_block[k], dtype=np.int64)] for k, block in blocks
                               if per_block[k] is not None]
    return {name: (np.concatenate(p).astype(np.int64) if p else np.zeros((0, 3), np.int64)) for name, p in parts.items()}


def _on_boundary(path: str, name: str, triangles: np.ndarray, boundary: tuple[np.ndarray, np.ndarray],
                 count: int) -> np.ndarray:
    """The part's triangles as outward-oriented boundary triangles; refuses triangles that
    bound no tetrahedron or two (an internal surface)."""
    oriented, keys = boundary
    if not len(triangles):
        return triangles
    wanted = triangle_keys(triangles, count)
    position = np.searchsorted(keys, wanted).clip(0, len(keys) - 1)
    found = keys[position] == wanted
    if not found.all():
        bad = np.flatnonzero(~found)
        raise MeshError(f"{path}: tag '{name}' has {len(bad)} triangles that are not on the boundary of the "
                        f"tetrahedra (internal surfaces are not supported), the first has vertices "
                        f"{triangles[bad[0]].tolist()}")
    return oriented[position]


def _triangle_normals(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (F, 3) (by the vertex order) and areas (F,) of triangles."""
    corners = vertices[triangles]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(cross, axis=1)
    return cross / np.maximum(length, 1e-300)[:, None], length / 2


def plane_of(vertices: np.ndarray, triangles: np.ndarray) -> Plane | None:
    """The plane of a boundary part, if all its triangles lie in one."""
    if not len(triangles):
        return None
    normals, areas = _triangle_normals(vertices, triangles)
    normal = (normals * areas[:, None]).sum(0)
    if np.linalg.norm(normal) <= 1e-12 * areas.sum():  # a closed surface: no mean normal
        return None
    normal = normal / np.linalg.norm(normal)
    diameter = float(np.linalg.norm(vertices.max(0) - vertices.min(0)))
    points = vertices[np.unique(triangles)]
    offset = float((points @ normal).mean())
    if (normals @ normal).min() < 1 - PLANE_TOLERANCE or np.abs(points @ normal - offset).max() > PLANE_TOLERANCE * diameter:
        return None
    heights = vertices @ normal - offset
    axes = np.flatnonzero(np.abs(normal) > 1 - PLANE_TOLERANCE)
    return Plane(tuple(normal.tolist()), offset, bool(heights.max() <= PLANE_TOLERANCE * diameter),
                 float(-heights.min()), int(axes[0]) if len(axes) else None)
