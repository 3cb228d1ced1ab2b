"""Quadrature rules: exactness by degree, convergence rates, Sobol's point set, laziness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import qmc

from vpinn.geometry import Box
from vpinn.quadrature import ConcatRule, GaussRule, SobolRule

F64 = torch.float64
BOX = Box((-0.5, 0.0, 1.0), (1.0, 2.0, 1.5))


def monomial_integral(box: Box, powers) -> float:
    """Exact integral of x^a y^b z^c over the box."""
    return math.prod((hi ** (p + 1) - lo ** (p + 1)) / (p + 1) for lo, hi, p in zip(box.lower, box.upper, powers))


def integrate(rule, fn, chunk: int = 4096) -> float:
    return float(rule.total(lambda batch: fn(batch.points), chunk, "cpu", F64))


@pytest.mark.parametrize("order", range(1, 7))
def test_gauss_is_exact_to_degree_2q_minus_1(order):
    rule = GaussRule(BOX.volume_map(), (2, 3, 1), order)
    top = 2 * order - 1
    for powers in [(top, 0, 0), (0, top, 0), (0, 0, top), (top, top, top), (top - 1, 1, top)]:
        powers = tuple(max(p, 0) for p in powers)
        exact = monomial_integral(BOX, powers)
        value = integrate(rule, lambda x: x[:, 0] ** powers[0] * x[:, 1] ** powers[1] * x[:, 2] ** powers[2])
        assert abs(value - exact) <= 1e-12 * max(1.0, abs(exact)), (powers, value, exact)
    # ... and not beyond: degree 2q in one direction is not integrated exactly.
    exact = monomial_integral(BOX, (2 * order, 0, 0))
    assert abs(integrate(rule, lambda x: x[:, 0] ** (2 * order)) - exact) > 1e-10


@pytest.mark.parametrize("order", [1, 2, 3])
def test_gauss_converges_at_rate_2q(order):
    """Error of a smooth non-polynomial integrand falls like h^(2q)."""
    box = Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    exact = (1 - math.cos(1.0)) * (math.e - 1) * math.sin(1.0)  # int sin x * e^y * cos z
    cells, errors = [2, 4, 8], []
    for n in cells:
        rule = GaussRule(box.volume_map(), (n, n, n), order)
        errors.append(abs(integrate(rule, lambda x: torch.sin(x[:, 0]) * torch.exp(x[:, 1]) * torch.cos(x[:, 2])) - exact))
    slope = np.polyfit(np.log(1 / np.array(cells)), np.log(errors), 1)[0]
    assert abs(slope - 2 * order) < 0.3, (slope, errors)


def test_face_rules_have_the_face_area_and_normals():
    rule = ConcatRule([GaussRule(BOX.face_map(f), (3, 2), 2) for f in ("xmin", "ymax", "zmax")])
    batch = rule.take(torch.arange(rule.size), F64)
    areas = [2.0 * 0.5, 1.5 * 0.5, 1.5 * 2.0]
    assert float(batch.weights.sum()) == pytest.approx(sum(areas), rel=1e-14)
    assert rule.size == 3 * 24 and torch.all(batch.normals[:24] == torch.tensor([-1.0, 0, 0], dtype=F64))
    assert torch.all(batch.points[24:48, 1] == 2.0) and torch.all(batch.points[48:, 2] == 1.5)
    # Exact for y^3 z on face xmin (degree 3 per direction, order 2):
    face = GaussRule(BOX.face_map("xmin"), (1, 1), 2)
    value = integrate(face, lambda x: x[:, 1] ** 3 * x[:, 2])
    assert value == pytest.approx((2.0**4 / 4) * (1.5**2 - 1.0) / 2, rel=1e-14)


def test_sobol_points_are_scipys_net():
    box = Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    rule = SobolRule(box.volume_map(), 2**10, seed=7)
    ours = rule.take(torch.arange(rule.size), F64).points.numpy()
    theirs = qmc.Sobol(3, scramble=True, seed=7).random_base2(10)
    np.testing.assert_allclose(np.array(sorted(map(tuple, ours))), np.array(sorted(map(tuple, theirs))), atol=1e-15)
    assert float(rule.take(torch.arange(rule.size), F64).weights.sum()) == pytest.approx(1.0, rel=1e-14)


def test_sobol_error_falls_faster_than_monte_carlo():
    box = Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    exact = (1 - math.cos(1.0)) * (math.e - 1) * math.sin(1.0)
    errors = [abs(integrate(SobolRule(box.volume_map(), 2**m, seed=1), lambda x: torch.sin(x[:, 0]) * torch.exp(x[:, 1]) * torch.cos(x[:, 2])) - exact)
              for m in (8, 12, 16)]
    slope = np.polyfit(np.log([2.0**8, 2.0**12, 2.0**16]), np.log(errors), 1)[0]
    assert slope < -0.8, (slope, errors)  # Monte Carlo would give -0.5


def test_rules_are_lazy():
    """A rule of a billion points costs nothing until indices are asked for."""
    rule = GaussRule(BOX.volume_map(), (1000, 1000, 1000), 1)
    assert rule.size == 10**9
    last = rule.take(torch.tensor([0, rule.size - 1]), F64)
    assert torch.all(last.points[1] < torch.tensor(BOX.upper, dtype=F64))
    assert float(last.weights[0]) == pytest.approx(BOX.volume / 1e9, rel=1e-12)
