"""Poisson physics: derived sources, the energy at the exact solution, its stationarity, and the
exact full gradient by chunks.

Manufactured solution on the unit cube: u* = sin(pi x) sin(pi y) sin(pi z), -Laplace u* = 3 pi^2 u*,
E(u*) = -(1/2) integral |grad u*|^2 = -3 pi^2 / 16.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import SMALL_POISSON, Perturbed, energy_of
from vpinn.assemble import assemble
from vpinn.calculus import flux_divergence, value_and_gradient
from vpinn.expressions import parse_expression
from vpinn.problem import parse_problem
from vpinn.quadrature import GaussRule
from vpinn.train import full_loss_backward

F64 = torch.float64
U_EXACT = parse_expression("sin(pi*x)*sin(pi*y)*sin(pi*z)")


def random_points(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, dtype=F64, generator=torch.Generator().manual_seed(0))


def autograd_flux_divergence(k, u, x: torch.Tensor) -> torch.Tensor:
    """div(k grad u) by two levels of autograd: an independent reference."""
    x = x.clone().requires_grad_(True)
    (grad_u,) = torch.autograd.grad(u(x).sum(), x, create_graph=True)
    flux = k(x)[:, None] * grad_u
    return sum(torch.autograd.grad(flux[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(3))


def test_auto_source_is_minus_laplacian():
    x = random_points()
    f = -flux_divergence(parse_expression("1"), U_EXACT)
    torch.testing.assert_close(f(x), 3 * math.pi**2 * U_EXACT(x), rtol=1e-12, atol=1e-12)


def test_auto_source_with_variable_coefficient():
    """-div((1 + x) grad u) = -(1 + x) Laplace u - du/dx."""
    x = random_points()
    k = parse_expression("1 + x")
    f = -flux_divergence(k, U_EXACT)
    s = torch.sin(math.pi * x)
    du_dx = math.pi * torch.cos(math.pi * x[:, 0]) * s[:, 1] * s[:, 2]
    expected = (1 + x[:, 0]) * 3 * math.pi**2 * U_EXACT(x) - du_dx
    torch.testing.assert_close(f(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("text", ["exp(x*y)*cos(z)/(1 + x**2)", "sqrt(1 + x**2*y)*tanh(z - x)", "log(2 + sin(x*y*z))**3",
                                  "abs(x - 0.5)**3 * sinh(y) * cosh(z)", "tan(x/2) + y**z"])
def test_symbolic_derivatives_match_autograd(text):
    """First and second derivatives of the expression tree against autograd."""
    u, k = parse_expression(text), parse_expression("1 + x*y")
    x = random_points() * 0.9 + 0.05
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(u(xr).sum(), xr)
    torch.testing.assert_close(u.value_and_gradient(x)[1], grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(flux_divergence(k, u)(x), autograd_flux_divergence(k, u, x), rtol=1e-11, atol=1e-11)


def setup_for(text: str):
    """The float64 assembly of problem-file ``text``."""
    return assemble(parse_problem(text, overrides={"train.dtype": "float64"}), torch.device("cpu"))


def test_energy_of_exact_solution_has_its_closed_form():
    setup = setup_for(SMALL_POISSON)
    value = energy_of(setup, setup.physics.exact)
    assert value == pytest.approx(-3 * math.pi**2 / 16, rel=1e-9)


@pytest.mark.parametrize("neumann", [False, True])
def test_energy_is_stationary_at_the_exact_solution(neumann):
    """E(u* + eps v) = E(u*) + O(eps^2): the first variation vanishes, the second is |v|_E^2.

    With a Neumann face (x = 1, flux "auto"), v need not vanish there: this checks the sign and
    size of the boundary term."""
    text = SMALL_POISSON
    if neumann:
        text = text.replace('on = "all"', 'on = ["xmin", "ymin", "ymax", "zmin", "zmax"]')
        text = text.replace("[exact]", '[[bc]]\ntype = "neumann"\non = "xmax"\nvalue = "auto"\n[exact]')
    setup = setup_for(text)
    physics = setup.physics
    # v = x (1 - x if no Neumann face) y(1-y) z(1-z) sin(2x + y)
    def v(x):
        bubble = x[:, 0] * (1 - x[:, 0] if not neumann else 1) * x[:, 1] * (1 - x[:, 1]) * x[:, 2] * (1 - x[:, 2])
        return bubble * torch.sin(2 * x[:, 0] + x[:, 1])

    def grad_v(x):
        return value_and_gradient(v, x)[1]

    rule = setup.evaluation_rule
    e = lambda eps: energy_of(setup, Perturbed(physics.exact, eps, [v]), 8192)  # noqa: E731
    eps = 1e-3
    first = (e(eps) - e(-eps)) / (2 * eps)
    second = (e(eps) + e(-eps) - 2 * e(0.0)) / eps**2
    norm = float(rule.total(lambda b: (grad_v(b.points) ** 2).sum(1), 8192, "cpu", F64))
    assert abs(first) < 1e-7 * norm
    assert second == pytest.approx(norm, rel=1e-6)


def test_chunked_full_gradient_equals_one_shot():
    setup = setup_for(SMALL_POISSON)
    terms = setup.terms
    params = list(setup.field.parameters())
    grads = []
    for chunk in (terms[0].rule.size, 777):
        for p in params:
            p.grad = None
        loss = full_loss_backward(terms, setup.trial, chunk, "cpu", F64)
        grads.append((float(loss), [p.grad.clone() for p in params]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-12)
    for one_shot, chunked in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(chunked, one_shot, rtol=1e-10, atol=1e-13)


def test_gauss_rule_sum_of_energy_density_matches_network_free_closed_form():
    """Sanity of the rule itself on the energy integrand of u*: 48k points, error < 1e-10."""
    box_rule = GaussRule(setup_for(SMALL_POISSON).domain.volume_map(), (6, 6, 6), 4)
    integral = float(box_rule.total(lambda b: U_EXACT(b.points) ** 2, 4096, "cpu", F64))
    assert integral == pytest.approx(1 / 8, rel=1e-10)
