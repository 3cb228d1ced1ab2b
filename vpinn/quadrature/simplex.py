"""Gauss rules on tetrahedra and triangles, and lazy composite rules on simplex meshes.

A *simplex table* gives ``q`` nodes in barycentric coordinates (q, d + 1) and weights (q,)
summing to 1 (the element's measure multiplies them).  Every table has positive weights and all
nodes inside the element; ``degree`` is the polynomial degree integrated exactly:

* tetrahedra: degree 1 (centroid, 1 node), 2 (4 nodes), 3 (Stroud's conical product of
  Gauss-Jacobi rules, 8 nodes), 4 and 5 (Walkington's symmetric 14-node rule);
* triangles: degree 1 (centroid), 2 (3 nodes), 3 and 4 (Dunavant's 6 nodes), 5 (Dunavant's 7).

:class:`SimplexMeshRule` composes a table over the elements of a mesh, optionally refined
``refine`` times into 2^d children per element (Bey's red refinement of tetrahedra: 8 children of
equal volume; triangles: 4 of equal area), so that one mesh serves rules of any size.  Point ``i``
is element ``i // (children * q)``, child ``(i // q) % children`` (one base-2^d digit per level)
and node ``i % q``; points and weights are computed from the index on the index's device, and
nothing of the rule's size is stored beyond the mesh's vertex and element tables.
"""

from __future__ import annotations


import numpy as np
import torch

from vpinn.quadrature.base import PointBatch, QuadratureRule

#: the degrees with a table (degree 4 uses the degree-5 rule: no smaller positive one is tabulated)
DEGREES = (1, 2, 3, 4, 5)


def _orbit(points: list[tuple[float, ...]]) -> np.ndarray:
    """All distinct permutations of barycentric coordinate tuples (the symmetry orbit)."""
    import itertools

    seen = []
    for p in points:
        for perm in itertools.permutations(p):
            if not any(np.allclose(perm, s, rtol=0, atol=1e-15) for s in seen):
                seen.append(perm)
    return np.array(seen, dtype=np.float64)


def _symmetric(classes: list[tuple[tuple[float, ...], float]]) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a symmetric rule from (generator, weight of each orbit point)."""
    nodes, weights = [], []
    for generator, weight in classes:
        orbit = _orbit([generator])
        nodes.append(orbit)
        weights.append(np.full(len(orbit), weight))
    return np.concatenate(nodes), np.concatenate(weights)


def _stroud_tetrahedron(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Stroud's conical product rule with ``n^3`` nodes (degree 2n - 1): Gauss-Jacobi rules in
    the collapsed coordinates of the Duffy map, all weights positive."""
    from scipy.special import roots_jacobi

    rules = [roots_jacobi(n, alpha, 0.0) for alpha in (2.0, 1.0, 0.0)]
    (a, wa), (b, wb), (c, wc) = [((t + 1) / 2, w) for t, w in rules]
    x1, x2, x3 = np.meshgrid(a, b, c, indexing="ij")
    w = np.einsum("i,j,k->ijk", wa, wb, wc)
    l1 = x1
    l2 = (1 - x1) * x2
    l3 = (1 - x1) * (1 - x2) * x3
    bary = np.stack([1 - l1 - l2 - l3, l1, l2, l3], -1).reshape(-1, 4)
    weights = w.ravel()
    return bary, weights / weights.sum()


def tetrahedron_table(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric nodes (q, 4) and weights (q,) summing to 1, exact to ``degree`` (1..5)."""
    if degree == 1:
        return np.full((1, 4), 0.25), np.ones(1)
    if degree == 2:
        a, b = 0.5854101966249685, 0.1381966011250105
        return _symmetric([((a, b, b, b), 0.25)])
    if degree == 3:
        return _stroud_tetrahedron(2)
    if degree in (4, 5):
        a1, a2, a3 = 0.0927352503108912, 0.3108859192633006, 0.4544962958743504
        w1, w2, w3 = 0.01224884051939366, 0.01878132095300264, 0.007091003462846911
        return _symmetric([((a1, a1, a1, 1 - 3 * a1), 6 * w1), ((a2, a2, a2, 1 - 3 * a2), 6 * w2),
                           ((a3, a3, 0.5 - a3, 0.5 - a3), 6 * w3)])
    raise ValueError(f"tetrahedral rules have degree 1 to 5, not {degree}")


def triangle_table(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric nodes (q, 3) and weights (q,) summing to 1, exact to ``degree`` (1..5)."""
    if degree == 1:
        return np.full((1, 3), 1 / 3), np.ones(1)
    if degree == 2:
        return _symmetric([((2 / 3, 1 / 6, 1 / 6), 1 / 3)])
    if degree in (3, 4):
        a, b = 0.445948490915965, 0.091576213509771
        return _symmetric([((a, a, 1 - 2 * a), 0.223381589678011), ((b, b, 1 - 2 * b), 0.109951743655322)])
    if degree == 5:
        a, b = 0.470142064105115, 0.101286507323456
        return _symmetric([((1 / 3, 1 / 3, 1 / 3), 0.225), ((a, a, 1 - 2 * a), 0.132394152788506),
                           ((b, b, 1 - 2 * b), 0.125939180544827)])
    raise ValueError(f"triangle rules have degree 1 to 5, not {degree}")


def _midpoint_children(corners: int, children: list[tuple[tuple[int, int], ...]]) -> np.ndarray:
    """Children (c, corners, corners) as barycentric matrices: row v of child k gives the
    child's vertex v as a combination of the parent's vertices; each vertex is named by the
    pair of parent vertices whose midpoint it is (a pair (i, i) is vertex i itself)."""
    matrices = np.zeros((len(children), corners, corners))
    for k, child in enumerate(children):
        for v, (i, j) in enumerate(child):
            matrices[k, v, i] += 0.5
            matrices[k, v, j] += 0.5
    return matrices


#: Bey's red refinement of a tetrahedron (0..3) into 8 children of equal volume
TETRA_CHILDREN = _midpoint_children(4, [
    ((0, 0), (0, 1), (0, 2), (0, 3)), ((0, 1), (1, 1), (1, 2), (1, 3)),
    ((0, 2), (1, 2), (2, 2), (2, 3)), ((0, 3), (1, 3), (2, 3), (3, 3)),
    ((0, 1), (0, 2), (0, 3), (1, 3)), ((0, 1), (0, 2), (1, 2), (1, 3)),
    ((0, 2), (0, 3), (1, 3), (2, 3)), ((0, 2), (1, 2), (1, 3), (2, 3)),
])
#: a triangle (0..2) into 4 children of equal area
TRIANGLE_CHILDREN = _midpoint_children(3, [
    ((0, 0), (0, 1), (0, 2)), ((0, 1), (1, 1), (1, 2)), ((0, 2), (1, 2), (2, 2)), ((0, 1), (1, 2), (0, 2)),
])


def simplex_measure(corners: torch.Tensor) -> torch.Tensor:
    """Volume (tetrahedra: corners (b, 4, 3)) or area (triangles: (b, 3, 3)) of each element (b,)."""
    edges = corners[:, 1:] - corners[:, :1]
    if corners.shape[1] == 4:
        return torch.linalg.det(edges).abs() / 6
    return torch.linalg.cross(edges[:, 0], edges[:, 1]).norm(dim=1) / 2


def refined_table(nodes: np.ndarray, weights: np.ndarray, children: np.ndarray, refine: int) -> tuple[np.ndarray, np.ndarray]:
    """The table's nodes in every child after ``refine`` levels, in barycentric coordinates of
    the parent: (children^refine * q, k) and weights (children^refine * q,) summing to 1.

    Row ``c * q + n`` is node n of child c, whose base-2^d digits (the last the coarsest level)
    choose the child at each level."""
    composite = np.eye(children.shape[1])[None]
    for _ in range(refine):  # prepend a finer level: child = children[digit] @ parent's child
        composite = np.einsum("cij,pjk->pcik", children, composite).reshape(-1, *children.shape[1:])
    return (np.einsum("nk,ckj->cnj", nodes, composite).reshape(-1, children.shape[1]),
            np.tile(weights, len(composite)) / len(composite))


class SimplexMeshRule(QuadratureRule):
    """A simplex table on every element of a mesh, each element refined ``refine`` times.

    The nodes of all children of one element are tabulated once (``2^(d refine) q`` rows of
    barycentric coordinates, independent of the mesh), so a batch costs one gather of its
    elements' corners and one weighted sum.

    Parameters
    ----------
    vertices:
        Vertex coordinates (V, 3), float64 (the problem's length units).
    elements:
        Vertex indices (E, 4) of tetrahedra or (E, 3) of triangles, int64.
    degree:
        Polynomial degree of the table (1..5).
    refine:
        Levels of refinement into 8 (tetrahedra) or 4 (triangles) equal children (at most 5).
    normals:
        For triangles, the outward unit normal of each element (E, 3); points of the rule then
        carry them (boundary rules).
    """

    def __init__(self, vertices: np.ndarray, elements: np.ndarray, degree: int, refine: int = 0,
                 normals: np.ndarray | None = None):
        if not 0 <= refine <= 5:
            raise ValueError(f"refine must be between 0 and 5, not {refine}")
        corners = elements.shape[1]
        nodes, weights = (tetrahedron_table if corners == 4 else triangle_table)(degree)
        nodes, weights = refined_table(nodes, weights, TETRA_CHILDREN if corners == 4 else TRIANGLE_CHILDREN, refine)
        vertices, elements = np.asarray(vertices, np.float64), np.asarray(elements, np.int64)
        self.refine, self.degree = int(refine), int(degree)
        self._host = {"vertices": vertices, "elements": elements, "nodes": nodes, "weights": weights,
                      "measures": simplex_measure(torch.as_tensor(vertices[elements])).numpy(),
                      "normals": None if normals is None else np.asarray(normals, np.float64)}
        self.per_element = len(weights)
        self.size = len(elements) * self.per_element
        self._tables: dict[tuple, dict[str, torch.Tensor]] = {}

    def _table(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The mesh and table on ``device``, in ``dtype`` (indices in int64)."""
        key = (device, dtype)
        if key not in self._tables:
            self._tables[key] = {name: None if value is None else
                                 torch.as_tensor(value, device=device,
                                                 dtype=torch.int64 if name == "elements" else dtype)
                                 for name, value in self._host.items()}
        return self._tables[key]

    def take(self, index: torch.Tensor, dtype: torch.dtype) -> PointBatch:
        table = self._table(index.device, dtype)
        element, local = index // self.per_element, index % self.per_element
        corners = table["vertices"][table["elements"][element]]  # (b, k, 3)
        points = (table["nodes"][local][:, :, None] * corners).sum(1)
        weights = table["weights"][local] * table["measures"][element]
        normals = None if table["normals"] is None else table["normals"][element]
        return PointBatch(points, weights, normals)
