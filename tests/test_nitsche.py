"""Nitsche's method: the schema keys, the boundary form's consistency and Galerkin exactness,
its Gram matrix, and solves that reach a measured accuracy."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import SMALL_POISSON, Perturbed, energy_of, error_of, solve_bundled
from vpinn.assemble import assemble
from vpinn.physics.base import integrand
from vpinn.problem import parse_problem
from vpinn.problem.spec import NITSCHE_PENALTY
from vpinn.train.curvature import curvature_chunks, jacobian_sums

F64 = torch.float64
CPU = torch.device("cpu")

#: -div((1 + x y) grad u) = f on the unit cube, u* = sin(pi x) sin(pi y) sin(pi z) + x y + z:
#: Neumann data on xmax, Nitsche's weak Dirichlet data u* on the other five faces
POISSON = """
name = "nitsche_poisson"
[pde]
type = "poisson"
coefficient = "1 + x*y"
[[bc]]
type = "dirichlet"
on = ["xmin", "ymin", "ymax", "zmin", "zmax"]
value = "auto"
method = "nitsche"
penalty = 40.0
[[bc]]
type = "neumann"
on = "xmax"
value = "auto"
[exact]
u = "sin(pi*x)*sin(pi*y)*sin(pi*z) + x*y + z"
[quadrature]
cells = [4, 4, 4]
[quadrature.boundary]
cells = [6, 6]
order = 5
[quadrature.evaluation]
cells = [6, 6, 6]
order = 5
[model]
width = 8
depth = 1
[train]
dtype = "float64"
"""

#: elasticity (lam = 0.6, mu = 0.4) on the unit cube, u* = (sin(x + 2y) z, x y^2, cos(y - z)):
#: clamps by Nitsche on xmin and ymin, traction u*'s on the other four faces
ELASTICITY = """
name = "nitsche_elasticity"
[pde]
type = "elasticity"
lam = 0.6
mu = 0.4
[[bc]]
type = "clamp"
on = ["xmin", "ymin"]
value = "auto"
method = "nitsche"
penalty = 25.0
[[bc]]
type = "traction"
on = ["xmax", "ymax", "zmin", "zmax"]
value = "auto"
[exact]
u = ["sin(x + 2*y)*z", "x*y**2", "cos(y - z)"]
[quadrature]
cells = [4, 4, 4]
[quadrature.boundary]
cells = [6, 6]
order = 5
[quadrature.evaluation]
cells = [6, 6, 6]
order = 5
[model]
width = 8
depth = 1
[train]
dtype = "float64"
"""


def assembly_of(text: str, overrides: dict | None = None):
    return assemble(parse_problem(text, "case.toml", overrides), CPU)


def smooth(x: torch.Tensor) -> torch.Tensor:
    """A perturbation that does not vanish on any face."""
    return torch.cos(x[:, 0] + 2 * x[:, 1]) * (1 + x[:, 2]) + x[:, 1] ** 2


def poisson_flux(x: torch.Tensor, grad_v: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """``k grad v . n`` (b, 1) with POISSON's ``k = 1 + x y``."""
    return (1 + x[:, 0] * x[:, 1])[:, None] * (grad_v * normals[:, None, :]).sum(2)


def elastic_traction(x: torch.Tensor, grad_v: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """``sigma(v) n`` (b, 3) with ELASTICITY's Lamé parameters."""
    strain = 0.5 * (grad_v + grad_v.transpose(1, 2))
    trace = strain.diagonal(dim1=1, dim2=2).sum(1)
    sigma = 0.8 * strain + 0.6 * trace[:, None, None] * torch.eye(3, dtype=x.dtype)
    return (sigma @ normals[:, :, None])[:, :, 0]


def nitsche_norm(setup, v, conormal, gamma: float) -> float:
    """``a_N(v, v) = integral k |grad v|^2 - 2 integral_D T(v) . v + gamma integral_D |v|^2`` of a
    perturbation ``v`` (one callable per component), written out from the formula with the
    conormal derivative ``T`` given by hand: the energy's second variation."""
    physics = setup.physics
    nitsche = next(t for t in setup.terms if t.name.startswith("nitsche"))
    parts = Perturbed(physics.exact, 1.0, v).parts
    volume = setup.evaluation_rule.total(lambda b: physics.energy_norm(b.points, parts(b.points)[1]), 1 << 16, "cpu", F64)

    def boundary(b):
        value, grad = parts(b.points)
        return (-2 * conormal(b.points, grad, b.normals) * value + gamma * value * value).sum(1)

    return float(volume + nitsche.rule.total(boundary, 1 << 16, "cpu", F64))


@pytest.mark.parametrize("text, v, conormal, gamma", [
    (POISSON, [smooth], poisson_flux, 40.0),
    (ELASTICITY, [smooth, lambda x: x[:, 0] * torch.sin(x[:, 2]) + 1, lambda x: x[:, 1] - x[:, 0] * x[:, 2]],
     elastic_traction, 25.0),
])
def test_exact_solution_is_stationary_for_the_nitsche_energy(text, v, conormal, gamma):
    """``E(u* + eps v)`` with ``v`` free on the Nitsche faces: the first variation vanishes at u*
    (the consistency term cancels the flux that integration by parts leaves there), is
    ``0.1 a_N(v, v)`` at ``u* + 0.1 v``, and the second variation is ``a_N(v, v)``."""
    setup = assembly_of(text)
    exact = setup.physics.exact
    e = lambda base, eps: energy_of(setup, Perturbed(exact, base + eps, v))  # noqa: E731
    eps = 1e-3
    first = lambda base: (e(base, eps) - e(base, -eps)) / (2 * eps)  # noqa: E731  (exact: E is quadratic in eps)
    second = (e(0.0, eps) + e(0.0, -eps) - 2 * e(0.0, 0.0)) / eps**2
    norm = nitsche_norm(setup, v, conormal, gamma)
    assert norm > 0.1  # the penalties make the energy coercive for these v
    assert abs(first(0.0)) < 1e-9 * norm
    assert first(0.1) == pytest.approx(0.1 * norm, rel=1e-6)
    assert second == pytest.approx(norm, rel=1e-6)


class Polynomials:
    """``u_k = sum_j c[k, j] p_j`` over the monomials ``p_j`` of degree <= 2 in x, y, z (10 per
    component): a trial function for a Galerkin solve."""

    EXPONENTS = [(a, b, c) for a in range(3) for b in range(3) for c in range(3) if a + b + c <= 2]

    def __init__(self, coefficients: torch.Tensor):
        self.coefficients = coefficients  # (m, 10)

    def basis(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values (b, 10) and gradients (b, 10, 3) of the monomials."""
        power = lambda axis, n: x[:, axis] ** n if n > 0 else torch.ones_like(x[:, 0])  # noqa: E731
        values = [power(0, a) * power(1, b) * power(2, c) for a, b, c in self.EXPONENTS]
        gradients = [torch.stack([a * power(0, a - 1) * power(1, b) * power(2, c), b * power(0, a) * power(1, b - 1) * power(2, c),
                                  c * power(0, a) * power(1, b) * power(2, c - 1)], 1) for a, b, c in self.EXPONENTS]
        return torch.stack(values, 1), torch.stack(gradients, 1)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, gradients = self.basis(x)
        return values @ self.coefficients.T, torch.einsum("kj,bjd->bkd", self.coefficients, gradients)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.basis(x)[0] @ self.coefficients.T


def galerkin_system(setup, components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Hessian (10m, 10m) and the gradient at 0 (10m,) of the assembled energy (every term
    over its whole rule) in the coefficients of the quadratic polynomials."""

    def energy(flat: torch.Tensor) -> torch.Tensor:
        trial = Polynomials(flat.view(components, -1))
        return sum((b.weights * integrand(t.form, trial, b)).sum()
                   for t in setup.terms for b in [t.rule.take(torch.arange(t.rule.size), F64)])

    start = torch.zeros(components * len(Polynomials.EXPONENTS), dtype=F64, requires_grad=True)
    (gradient,) = torch.autograd.grad(energy(start), start, create_graph=True)
    hessian = torch.stack([torch.autograd.grad(g, start, retain_graph=True)[0] for g in gradient])
    return hessian, gradient.detach()


@pytest.mark.parametrize("penalty", [40.0, 400.0])
@pytest.mark.parametrize("text, exact", [
    (POISSON, "1 + x*y - 2*z**2 + x*z"),
    (ELASTICITY, ["x*y + z", "1 - x**2 + y*z", "y**2 - x"]),
])
def test_galerkin_nitsche_reproduces_a_solution_in_the_space(text, exact, penalty):
    """The symmetric Nitsche method is consistent: over a trial space that holds u* (quadratic
    polynomials here) its minimiser is u* itself, whatever the penalty (while the energy is
    coercive) -- a penalty method without the consistency term would miss it by O(1/gamma)."""
    setup = assembly_of(text, {"exact.u": exact, "bc[0].penalty": penalty})
    components = len(exact) if isinstance(exact, list) else 1
    hessian, gradient = galerkin_system(setup, components)
    assert torch.linalg.eigvalsh(hessian).min() > 0  # coercive on this space
    coefficients = torch.linalg.solve(hessian, -gradient).view(components, -1)
    x = setup.evaluation_rule.take(torch.arange(0, setup.evaluation_rule.size, 97), F64).points
    torch.testing.assert_close(Polynomials(coefficients).value(x), setup.physics.exact.value(x), rtol=0, atol=1e-10)


def test_too_small_a_penalty_leaves_the_energy_unbounded_below():
    """Coercivity needs ``gamma`` above the trial space's trace constant: on the quadratics
    ``gamma = 4`` is below it (the Hessian has negative eigenvalues), 40 above."""
    hessian = lambda penalty: galerkin_system(assembly_of(POISSON, {"bc[0].penalty": penalty}), 1)[0]  # noqa: E731
    assert torch.linalg.eigvalsh(hessian(4.0)).min() < -0.01 < 0 < torch.linalg.eigvalsh(hessian(40.0)).min()


#: an exact Dirichlet entry (xmin) beside a Nitsche entry (the other faces) on a 2 x 2 x 3 box
MIXED = """
name = "mixed"
[domain]
type = "box"
lower = [0, 0, 0]
upper = [2, 2, 3]
[pde]
type = "poisson"
coefficient = "1 + x*y"
[[bc]]
type = "dirichlet"
on = ["xmin"]
value = "auto"
[[bc]]
type = "dirichlet"
on = ["xmax", "ymin", "ymax", "zmin", "zmax"]
value = "auto"
method = "nitsche"
[exact]
u = "sin(pi*x)*sin(pi*y)*sin(pi*z) + x*y + z"
[model]
width = 8
depth = 1
[train]
dtype = "float64"
"""


def test_nitsche_faces_are_left_free_by_the_ansatz_and_mixing_works():
    """The ansatz meets the data on the exact entry's face only; the energy has one Nitsche term
    on the other faces, with the default penalty ``NITSCHE_PENALTY * max k / L`` (k = 1 + x y
    reaches 5 on xmax and ymax; L = 2, the box's shortest side)."""
    spec = parse_problem(MIXED, "case.toml")
    assert [(bc.method, bc.penalty) for bc in spec.bc] == [("exact", None), ("nitsche", None)]
    setup = assemble(spec, CPU)
    (nitsche,) = [t for t in setup.terms if t.name.startswith("nitsche")]
    assert nitsche.form.faces == ("xmax", "ymin", "ymax", "zmin", "zmax")
    inside = torch.rand(64, 3, dtype=F64, generator=torch.Generator().manual_seed(1)) * torch.tensor([2.0, 2, 3], dtype=F64)
    for x, mismatch in ((0.0, False), (2.0, True)):  # the faces xmin (exact) and xmax (Nitsche)
        points = inside.clone()
        points[:, 0] = x
        gap = float((setup.trial.value(points) - setup.physics.exact.value(points)).abs().max().detach())
        assert (gap > 1e-3) if mismatch else (gap < 1e-12)
    one = nitsche.rule.take(torch.arange(1), F64)  # gamma |u - g|^2 / 2 with u - g = 1 is gamma / 2
    gamma = 2 * float(nitsche.form.curvature(one, setup.physics.exact.value(one.points) + 1, None).detach())
    assert gamma == pytest.approx(NITSCHE_PENALTY * 5 / 2, rel=1e-2)


@pytest.mark.parametrize("old, new, key, marker, words", [
    ('value = "0"', 'value = "0"\nmethod = "nitsche"\npenalty = 0.0', "bc[0].penalty", "penalty = 0.0",
     "must be positive, not 0.0"),
    ('value = "0"', 'value = "0"\nmethod = "nitsche"\npenalty = -3.0', "bc[0].penalty", "penalty = -3.0",
     "must be positive, not -3.0"),
    ('value = "0"', 'value = "0"\nmethod = "nitsche"\npenalty = inf', "bc[0].penalty", "penalty = inf",
     "must be finite, not inf"),
    ('value = "0"', 'value = "0"\npenalty = 10.0', "bc[0].penalty", "penalty = 10.0", 'only a method = "nitsche" entry'),
    ('value = "0"', 'value = "0"\nmethod = "weak"', "bc[0].method", 'method = "weak"', "must be one of 'exact', 'nitsche'"),
    ('type = "dirichlet"\non = "all"', 'type = "neumann"\non = "all"\nmethod = "nitsche"', "bc[0].method",
     'method = "nitsche"', "a neumann entry is a boundary term of the energy already"),
])
def test_nitsche_keys_are_checked_with_one_line_errors(old, new, key, marker, words):
    assert old in SMALL_POISSON
    text = SMALL_POISSON.replace(old, new, 1)
    error = error_of(text)
    assert (error.key, error.line) == (key, text.splitlines().index(marker) + 1) and words in error.reason


def test_gram_matrix_takes_the_penalty_part_of_the_boundary():
    """ENGD's Gram matrix adds ``gamma sum_i w_i J_u,i^T J_u,i`` over the Nitsche sample (a PSD
    stand-in for the indefinite boundary Hessian) and leaves the sample's gradient alone."""
    setup = assembly_of(POISSON)
    volume, nitsche = setup.terms[0], next(t for t in setup.terms if t.name.startswith("nitsche"))
    pieces = curvature_chunks(volume.form, setup.trial, volume.rule.take(torch.arange(500), F64), 1.0, 200)
    batch = nitsche.rule.take(torch.arange(0, nitsche.rule.size, 7), F64)
    boundary = curvature_chunks(nitsche.form, setup.trial, batch, 3.0, 100)
    plain = jacobian_sums(pieces, setup.trial)
    both = jacobian_sums(pieces, setup.trial, gram_only=boundary)
    rows = setup.trial.parameter_jacobian(batch.points)[:, 0]
    expected = 40.0 * rows.T @ (3.0 * batch.weights[:, None] * rows)
    torch.testing.assert_close(both.matrix - plain.matrix, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(both.slope_gradient, plain.slope_gradient, rtol=0, atol=0)
    assert torch.linalg.eigvalsh(both.matrix - plain.matrix).min() > -1e-10 * float(expected.diagonal().max())


#: the bundled Nitsche cube, reduced: 16^3 x 27 = 110,592 volume points, 6 x 8^2 x 16 = 6,144
#: boundary points, a 1,728-point Gram rule
REDUCED = {"quadrature.cells": [16, 16, 16], "quadrature.order": 3, "quadrature.boundary.cells": [8, 8],
           "quadrature.finish.cells": [4, 4, 4], "quadrature.evaluation.cells": [8, 8, 8], "train.max_time": 0,
           "output.grid": [5, 5, 5]}


def test_reduced_nitsche_cube_is_accurate(tmp_path):
    """A short solve of problems/poisson_cube_nitsche.toml (no distance function): 300 Adam and
    20 ENGD steps, about 30 s on one thread."""
    _, summary = solve_bundled(tmp_path, "poisson_cube_nitsche",
                               {**REDUCED, "train.phase[0].steps": 300, "train.phase[1].steps": 20})
    assert summary["status"] == "completed" and summary["steps"] == {"adam": 300, "engd": 20}
    assert summary["rel_l2"] <= 2e-2  # measured: 7.7e-3 (after Adam: 0.76)


@pytest.mark.slow
def test_nitsche_cube_reaches_its_bundled_accuracy(tmp_path):
    """The bundled Nitsche cube at its own rules, 500 Adam + 100 ENGD steps (the README's run,
    about 450 s on one thread)."""
    _, summary = solve_bundled(tmp_path, "poisson_cube_nitsche",
                               {"train.max_time": 0, "train.phase[1].steps": 100, "output.grid": [5, 5, 5]})
    assert summary["rel_l2"] <= 1e-3 and summary["rel_h1"] <= 4e-3  # measured: 4.25e-4, 1.77e-3
