"""Simplex rules: exact by degree on mapped (and refined) elements, positive, lazy and chunkable.

The exact integral of a product of barycentric coordinates over a simplex of dimension d and
measure |T| is ``d! |T| prod(a_k!) / (sum(a) + d)!``; products of barycentric coordinates of total
degree <= p span the polynomials of degree <= p, so matching them all proves exactness to p.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vpinn.quadrature.simplex import DEGREES, SimplexMeshRule, tetrahedron_table, triangle_table

F64 = torch.float64
#: one skewed tetrahedron and a second one sharing its face (0, 1, 2), and a skewed triangle in 3D
TETRA = np.array([[0.1, -0.2, 0.3], [1.3, 0.1, 0.2], [0.2, 0.9, -0.1], [0.4, 0.3, 1.7], [0.6, 0.2, -1.1]])
TRIANGLE = np.array([[0.1, -0.2, 0.3], [1.3, 0.1, 0.2], [0.2, 0.9, -0.4]])


def barycentric(points: torch.Tensor, corners: np.ndarray) -> torch.Tensor:
    """Barycentric coordinates (b, d + 1) of ``points`` (b, 3) in the simplex ``corners``."""
    c = torch.as_tensor(corners, dtype=F64)
    edges = (c[1:] - c[0]).T  # (3, d)
    local = torch.linalg.lstsq(edges, (points - c[0]).T).solution.T
    return torch.cat([1 - local.sum(1, keepdim=True), local], 1)


def measure(corners: np.ndarray) -> float:
    edges = corners[1:] - corners[0]
    if len(corners) == 4:
        return abs(np.linalg.det(edges)) / 6
    return np.linalg.norm(np.cross(edges[0], edges[1])) / 2


@pytest.mark.parametrize("degree", DEGREES)
@pytest.mark.parametrize("refine", [0, 1, 2])
@pytest.mark.parametrize("kind", ["tetrahedron", "triangle"])
def test_exact_to_its_degree_on_a_mapped_element(degree, refine, kind):
    corners = TETRA[:4] if kind == "tetrahedron" else TRIANGLE
    d = len(corners) - 1
    rule = SimplexMeshRule(corners, np.arange(d + 1)[None], degree, refine)
    batch = rule.take(torch.arange(rule.size), F64)
    lam = barycentric(batch.points, corners)
    for powers in itertools.product(range(degree + 1), repeat=d + 1):
        if sum(powers) > degree:
            continue
        value = float((batch.weights * torch.prod(lam ** torch.tensor(powers, dtype=F64), 1)).sum())
        exact = math.factorial(d) * measure(corners) * math.prod(map(math.factorial, powers)) / math.factorial(sum(powers) + d)
        assert abs(value - exact) <= 1e-12 * exact, (powers, value, exact)


@pytest.mark.parametrize("table", [tetrahedron_table, triangle_table])
@pytest.mark.parametrize("degree", DEGREES)
def test_tables_are_positive_and_inside(table, degree):
    nodes, weights = table(degree)
    assert (weights > 0).all() and abs(weights.sum() - 1) < 1e-14
    assert (nodes > 0).all() and np.allclose(nodes.sum(1), 1, atol=1e-15)


def test_not_exact_beyond_degree_five():
    corners = TETRA[:4]
    rule = SimplexMeshRule(corners, np.arange(4)[None], 5)
    batch = rule.take(torch.arange(rule.size), F64)
    lam = barycentric(batch.points, corners)
    value = float((batch.weights * lam[:, 0] ** 6).sum())
    exact = 6 * measure(corners) * math.factorial(6) / math.factorial(9)
    assert abs(value - exact) > 1e-8 * exact


def test_index_layout_and_chunked_sums():
    """Point i is element i // per_element; chunked totals equal the one-shot sum; the rule
    stores the mesh and one element's table (nodes and weights), nothing of its own size."""
    elements = np.array([[0, 1, 2, 3], [0, 2, 1, 4]])
    rule = SimplexMeshRule(TETRA, elements, 3, refine=2)
    assert rule.size == 2 * 8 * 64
    first, second = rule.take(torch.arange(rule.size // 2), F64), rule.take(torch.arange(rule.size // 2, rule.size), F64)
    assert float(first.weights.sum()) == pytest.approx(measure(TETRA[:4]), rel=1e-13)
    assert float(second.weights.sum()) == pytest.approx(measure(TETRA[[0, 2, 1, 4]]), rel=1e-13)
    fn = lambda b: torch.sin(b.points).sum(1)  # noqa: E731
    one_shot = rule.total(fn, rule.size, "cpu", F64)
    assert float(rule.total(fn, 37, "cpu", F64)) == pytest.approx(float(one_shot), rel=1e-13)
    stored = sum(t.numel() for t in rule._table(torch.device("cpu"), F64).values() if t is not None)
    assert stored == TETRA.size + elements.size + len(elements) + rule.per_element * (4 + 1)


def test_boundary_rule_carries_normals():
    normals = np.array([[0.0, 0.0, 1.0]])
    rule = SimplexMeshRule(TRIANGLE, np.array([[0, 1, 2]]), 2, 1, normals)
    batch = rule.take(torch.arange(rule.size), F64)
    assert torch.equal(batch.normals, torch.tensor([[0.0, 0.0, 1.0]], dtype=F64).expand(rule.size, 3))
    assert float(batch.weights.sum()) == pytest.approx(measure(TRIANGLE), rel=1e-14)
