"""Boundary parts named by geometry rather than by the file's tags: plane and box selectors.

A mesh written without tags (or with tags that miss a part) has its faces picked out here:
:class:`OnPlane` takes the boundary triangles whose three vertices lie within ``tolerance`` of
a plane, :class:`InBox` those whose three vertices lie in a box grown by ``tolerance`` on every
side.  :func:`with_selected` adds each selection to a :class:`~vpinn.geometry.mesh.Mesh` as a
part, with its plane when it is planar, so the selected parts get boundary rules, distance
functions and rollers exactly as tagged ones do.  On a mesh without tags, ``boundary`` keeps
the triangles no selector takes (and goes if there are none).

Each refusal is one :class:`SelectionError` naming the selector: a name that is already a face,
a selection of no triangle, triangles taken by another face too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vpinn.geometry.mesh import UNTAGGED, Mesh, MeshError, boundary_triangles, plane_of, triangle_keys

#: the default tolerance of a selector, relative to the mesh size (the boundary edges' median length)
RELATIVE_TOLERANCE = 1e-3


class SelectionError(MeshError):
    """A selector cannot name a face; ``index`` is its position, ``key`` the offending key ("" for the whole entry)."""

    def __init__(self, index: int, key: str, reason: str):
        super().__init__(reason)
        self.index, self.key, self.reason = index, key, reason


@dataclass(frozen=True)
class OnPlane:
    """The plane through ``point`` with normal ``normal`` (any length but zero, either sign)."""

    point: tuple[float, float, float]
    normal: tuple[float, float, float]

    def __call__(self, corners: np.ndarray, tolerance: float) -> np.ndarray:
        """Which triangles (corners (B, 3, 3)) have every vertex within ``tolerance`` of the plane (B,)."""
        unit = np.asarray(self.normal) / np.linalg.norm(self.normal)
        return (np.abs((corners - np.asarray(self.point)) @ unit) <= tolerance).all(axis=1)


@dataclass(frozen=True)
class InBox:
    """The axis-aligned box ``lower <= x <= upper``."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]

    def __call__(self, corners: np.ndarray, tolerance: float) -> np.ndarray:
        """Which triangles (corners (B, 3, 3)) have every vertex in the box grown by ``tolerance`` (B,)."""
        inside = (corners >= np.asarray(self.lower) - tolerance) & (corners <= np.asarray(self.upper) + tolerance)
        return inside.all(axis=(1, 2))


@dataclass(frozen=True)
class Selector:
    """A named selection: ``region`` (an :class:`OnPlane` or :class:`InBox`) and its absolute
    ``tolerance`` (the problem's length unit; None: :data:`RELATIVE_TOLERANCE` times the mesh size)."""

    name: str
    region: OnPlane | InBox
    tolerance: float | None = None


def mesh_size(corners: np.ndarray) -> float:
    """The median edge length of triangles (corners (B, 3, 3))."""
    return float(np.median(np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2)))


@functools.lru_cache(maxsize=8)
def with_selected(mesh: Mesh, selectors: Sequence[Selector]) -> Mesh:
    """``mesh`` with one more part per selector (a tuple, in order); see the module docstring."""
    if not selectors:
        return mesh
    untagged = tuple(mesh.faces) == (UNTAGGED,)
    boundary, keys = boundary_triangles(mesh.vertices, mesh.tetrahedra)
    tagged = {} if untagged else {name: np.isin(keys, triangle_keys(t, len(mesh.vertices)))
                                  for name, t in mesh.faces.items()}  # face -> which boundary triangles it has
    corners = mesh.vertices[boundary]
    size = mesh_size(corners)
    taken = np.full(len(boundary), -1)  # the selector that took each boundary triangle (-1: none)
    faces = {} if untagged else dict(mesh.faces)
    for index, selector in enumerate(selectors):
        if selector.name in mesh.faces or selector.name in faces or selector.name == "all":
            what = "the name of every face" if selector.name == "all" else "already a face of the mesh"
            raise SelectionError(index, "name", f"'{selector.name}' is {what}; choose another name")
        tolerance = RELATIVE_TOLERANCE * size if selector.tolerance is None else selector.tolerance
        chosen = np.flatnonzero(selector.region(corners, tolerance))
        if not len(chosen):
            raise SelectionError(index, "", f"selects no boundary triangle (tolerance {tolerance:.3g}; the mesh spans "
                                            f"{np.round(mesh.vertices.min(0), 6).tolist()} to "
                                            f"{np.round(mesh.vertices.max(0), 6).tolist()})")
        for name, theirs in {**tagged, **{selectors[k].name: taken == k for k in range(index)}}.items():
            if theirs[chosen].any():
                raise SelectionError(index, "", f"'{selector.name}' shares {int(theirs[chosen].sum())} triangles with "
                                                f"the face '{name}' (a triangle belongs to one face)")
        taken[chosen] = index
        faces[selector.name] = boundary[chosen]
    if untagged and (taken < 0).any():
        faces[UNTAGGED] = boundary[taken < 0]
    return Mesh(mesh.vertices, mesh.tetrahedra, faces,
                {name: plane for name, tri in faces.items() if (plane := plane_of(mesh.vertices, tri)) is not None})
