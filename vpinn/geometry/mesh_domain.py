"""A tetrahedral mesh as a domain: bounding box, volume, tagged faces, their planes, distances.

Quadrature on a mesh is not a map of the unit cube: :mod:`vpinn.assemble` builds
:class:`~vpinn.quadrature.simplex.SimplexMeshRule` objects on :attr:`MeshDomain.mesh` (its
tetrahedra, or the triangles of a face with their outward normals).  Distance functions for hard
conditions come from :mod:`vpinn.geometry.distance`: exact for faces that are supporting planes,
the R-equivalence of triangle distances for the others, multiplied over the parts and normalised
to a maximum of 1 over the tetrahedra's centroids.
"""

from __future__ import annotations

import numpy as np

from vpinn.geometry.distance import PlaneDistance, ProductDistance, TriangleDistance
from vpinn.geometry.mesh import Mesh

#: centroids (at most) on which a distance function's maximum is normalised
NORMALISATION_SAMPLES = 4096


class MeshDomain:
    """The domain of a :class:`~vpinn.geometry.mesh.Mesh`; faces are its boundary parts."""

    def __init__(self, mesh: Mesh):
        self.mesh = mesh
        self.lower = tuple(float(v) for v in mesh.vertices.min(0))
        self.upper = tuple(float(v) for v in mesh.vertices.max(0))
        self.faces = tuple(mesh.faces)
        #: face -> axis, for the faces that are planes normal to a coordinate axis (rollers)
        self.planes = {face: plane.axis for face, plane in mesh.planes.items() if plane.axis is not None}
        self._distances: dict[frozenset, ProductDistance] = {}

    @property
    def volume(self) -> float:
        """The mesh's volume (the sum of its tetrahedra's)."""
        return float(self.mesh.volumes.sum())

    def samples(self) -> np.ndarray:
        """Up to :data:`NORMALISATION_SAMPLES` centroids of tetrahedra (every k-th), (n, 3)."""
        step = max(1, len(self.mesh.tetrahedra) // NORMALISATION_SAMPLES)
        return self.mesh.vertices[self.mesh.tetrahedra[::step]].mean(1)

    def distance(self, faces: tuple[str, ...]) -> ProductDistance:
        """A smooth function vanishing exactly on ``faces``, positive inside, maximum about 1
        (one object per set of faces, so that components sharing it evaluate it once)."""
        key = frozenset(faces)
        if key not in self._distances:
            planes = [self.mesh.planes.get(f) for f in sorted(key)]
            factors = [PlaneDistance(p.normal, p.offset, p.depth) for p in planes if p is not None and p.supporting]
            curved = [f for f, p in zip(sorted(key), planes) if p is None or not p.supporting]
            if curved:
                triangles = np.concatenate([self.mesh.faces[f] for f in curved])
                factors.append(TriangleDistance(self.mesh.vertices[triangles]))
            self._distances[key] = ProductDistance(factors, self.samples())
        return self._distances[key]

    def input_features(self) -> None:
        """A mesh has no natural coordinates beyond x, y, z."""
        return None

    def profile(self, points: int) -> None:
        """A mesh has no distinguished line for 1D plots."""
        return None
