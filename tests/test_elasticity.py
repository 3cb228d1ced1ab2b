"""Elasticity physics: stresses, symbolic body forces and tractions, the exact solutions' energies
against closed forms, stationarity of the energy, the per-component ansatz, derived fields.

The bundled problems and their exact solutions (see the problem files):

* ``lame_sphere``: u = u_r(r) x/r, u_r = [(1-2nu) A r + (1+nu) B/(2 r^2)]/E, sigma_rr = A - B/r^3,
  sigma_tt = A + B/(2 r^3), A = p a^3/(b^3-a^3), B = p a^3 b^3/(b^3-a^3); a = 1, b = 4, p = 1.
* ``elasticity_cube``: u = (s, s, s), s = sin(pi x) sin(pi y) sin(pi z), clamped; E(u*) = -(3 pi^2/16)(lam + 4 mu).
* ``bending_beam``: u = (k x z, -nu k y z, -k/2 (x^2 + nu (z^2 - y^2))), sigma_xx = E k z; E(u*) = -E k^2 L/24.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import quad

from tests.conftest import A_IN, B_OUT, LAME_A, LAME_B, NU, P, REPO, Perturbed, assembled, energy_of, u_r
from tests.conftest import E_SPHERE as E
from vpinn.errors import VpinnWarning
from vpinn.expressions import parse_expression
from vpinn.physics.base import integrand
from vpinn.physics.elasticity import body_force_expressions, stress, stress_expressions, von_mises, voigt

F64 = torch.float64
KAPPA, LENGTH = 0.01, 10.0


def lame(e: float = E, nu: float = NU) -> tuple[float, float]:
    return e * nu / ((1 + nu) * (1 - 2 * nu)), e / (2 * (1 + nu))


def setup_of(name: str, overrides: dict | None = None):
    """The spec and float64 assembly of a bundled problem."""
    return assembled(REPO / "problems" / f"{name}.toml", overrides)


def autograd_divergence_of_stress(u_exprs, lam, mu, x):
    """div sigma(u) by two levels of autograd: an independent reference, (b, 3)."""
    x = x.clone().requires_grad_(True)
    attached = lambda values: values + 0 * x[:, 0] * x[:, 1] * x[:, 2]  # noqa: E731  (a graph even for constants)
    rows = [torch.autograd.grad(attached(u(x)).sum(), x, create_graph=True)[0] for u in u_exprs]
    sigma = stress(torch.stack(rows, dim=1), lam, mu)
    return torch.stack([sum(torch.autograd.grad(attached(sigma[:, i, j]).sum(), x, retain_graph=True)[0][:, j]
                            for j in range(3)) for i in range(3)], dim=1)


def test_stress_von_mises_and_voigt_order():
    lam, mu = lame(1.0, 0.25)
    grad_u = torch.tensor([[[1.0, 2.0, 0.0], [0.0, -1.0, 4.0], [6.0, 0.0, 3.0]]], dtype=F64)
    sigma = stress(grad_u, lam, mu)
    eps = torch.tensor([[1.0, 1.0, 3.0], [1.0, -1.0, 2.0], [3.0, 2.0, 3.0]], dtype=F64)
    torch.testing.assert_close(sigma[0], 2 * mu * eps + lam * 3.0 * torch.eye(3, dtype=F64))
    assert voigt(sigma)[0].tolist() == pytest.approx([sigma[0, i, j].item() for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))])
    uniaxial = torch.diag(torch.tensor([-5.0, 0, 0], dtype=F64))[None]
    shear = torch.tensor([[[0.0, 2.0, 0], [2.0, 0, 0], [0, 0, 0]]], dtype=F64)
    hydrostatic = 7 * torch.eye(3, dtype=F64)[None]
    assert von_mises(torch.cat([uniaxial, shear, hydrostatic])).tolist() == pytest.approx([5.0, 2 * math.sqrt(3), 0.0], abs=1e-12)


@pytest.mark.parametrize("texts", [
    ("sin(x*y)*exp(z)", "x**2*cos(z) + y", "sqrt(1 + x**2 + y*z)"),
    ("x*y*z", "0", "tanh(x - 2*y)*z**3"),
])
def test_symbolic_body_force_matches_autograd(texts):
    lam, mu = lame(3.0, 0.2)
    u = [parse_expression(t) for t in texts]
    x = torch.rand(64, 3, dtype=F64, generator=torch.Generator().manual_seed(0)) + 0.1
    f = torch.stack([component(x) for component in body_force_expressions(u, lam, mu)], dim=1)
    torch.testing.assert_close(f, -autograd_divergence_of_stress(u, lam, mu, x), rtol=1e-11, atol=1e-11)


def test_lame_solution_is_in_equilibrium_with_the_cavity_pressure():
    """The Lamé displacement needs no body force, loads the cavity with p and leaves r = b free."""
    spec, setup = setup_of("lame_sphere")
    lam, mu = spec.pde.lame
    u = spec.exact.components
    sphere = setup.domain
    x = sphere.volume_map()(torch.rand(200, 3, dtype=F64, generator=torch.Generator().manual_seed(1))).points
    f = torch.stack([component(x) for component in body_force_expressions(u, lam, mu)], dim=1)
    assert float(f.abs().max()) < 1e-12 * P / A_IN  # a load density of order p/a, exactly zero here
    sigma = stress_expressions(u, lam, mu)
    for face, radius, expected in (("inner", A_IN, P), ("outer", B_OUT, 0.0)):
        params = torch.rand(50, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
        mapped = sphere.face_map(face)(params)
        rows = torch.stack([torch.stack([s(mapped.points) for s in row], 1) for row in sigma], 1)
        traction = (rows @ mapped.normals[:, :, None])[..., 0]
        torch.testing.assert_close(traction, expected * mapped.points / radius, rtol=0, atol=1e-14)
        radial_stress = (mapped.normals[:, None, :] @ rows @ mapped.normals[:, :, None])[:, 0, 0]
        torch.testing.assert_close(radial_stress, torch.full_like(radial_stress, LAME_A - LAME_B / radius**3))


def lame_energies() -> tuple[float, float]:
    """Strain energy and E(u*) of the Lamé octant by 1D quadrature in r of u_r, sigma_rr, sigma_tt.

    U = (pi/2) integral_a^b (sigma_rr eps_rr + 2 sigma_tt eps_tt)/2 r^2 dr, eps_rr = du_r/dr,
    eps_tt = u_r/r; the load's work is p u_r(a) (pi/2) a^2; E(u*) = U - work.
    """
    alpha, beta = (1 - 2 * NU) * LAME_A / E, (1 + NU) * LAME_B / (2 * E)

    def density(r):
        sigma_rr, sigma_tt = LAME_A - LAME_B / r**3, LAME_A + LAME_B / (2 * r**3)
        eps_rr, eps_tt = alpha - 2 * beta / r**3, u_r(r) / r
        return 0.5 * (sigma_rr * eps_rr + 2 * sigma_tt * eps_tt) * r**2

    strain_energy = math.pi / 2 * quad(density, A_IN, B_OUT, epsabs=0, epsrel=1e-13)[0]
    return strain_energy, strain_energy - P * u_r(A_IN) * math.pi / 2 * A_IN**2


def test_lame_energies_are_clapeyrons():
    """The radial integral agrees with Clapeyron's theorem: E(u*) = -U = -(pi/4) p a^2 u_r(a)."""
    strain_energy, total = lame_energies()
    assert total == pytest.approx(-math.pi / 4 * P * A_IN**2 * u_r(A_IN), rel=1e-13)
    assert strain_energy == pytest.approx(-total, rel=1e-13)


def closed_form_energy(name: str) -> float:
    if name == "lame_sphere":
        return lame_energies()[1]
    if name == "elasticity_cube":
        lam, mu = lame(1.0, 0.3)
        return -3 * math.pi**2 / 16 * (lam + 4 * mu)
    return -E * KAPPA**2 * LENGTH / 24


@pytest.mark.parametrize("name, rule, tolerance", [
    ("lame_sphere", {"quadrature.evaluation.cells": [24, 8, 8], "quadrature.evaluation.order": 5}, 1e-11),
    ("elasticity_cube", {}, 1e-12),
    ("bending_beam", {}, 1e-13),
])
def test_energy_of_exact_solution_has_its_closed_form(name, rule, tolerance):
    """E(u*) of the bundled problems from their own densities and rules (volume + traction terms)."""
    _, setup = setup_of(name, rule)
    value = energy_of(setup, setup.physics.exact)
    assert value == pytest.approx(closed_form_energy(name), rel=tolerance)
    if name == "lame_sphere":  # the volume term alone is the strain energy
        strain = float(setup.evaluation_rule.total(lambda b: integrand(setup.physics.energy, setup.physics.exact, b),
                                                   1 << 16, "cpu", F64))
        assert strain == pytest.approx(lame_energies()[0], rel=tolerance)


@pytest.mark.parametrize("name, v", [
    # v_k vanishes on the symmetry plane normal to axis k (rollers); free on both spheres.
    ("lame_sphere", [lambda x: x[:, 0] * torch.sin(x[:, 1] + 2 * x[:, 2]),
                     lambda x: x[:, 1] * torch.cos(x[:, 0] * x[:, 2]),
                     lambda x: x[:, 2] * (1 + x[:, 0] ** 2 - x[:, 1])]),
    # v vanishes on the clamped end x = 0; free on the loaded end and the sides.
    ("bending_beam", [lambda x: x[:, 0] * torch.sin(x[:, 1] + 2 * x[:, 2]),
                      lambda x: x[:, 0] ** 2 * torch.cos(x[:, 2]),
                      lambda x: x[:, 0] * (1 + x[:, 1] * x[:, 2])]),
])
def test_energy_is_stationary_at_the_exact_solution(name, v):
    """E(u* + eps v) = E(u*) + (eps^2/2) ||v||_E^2: the first variation vanishes (the traction
    term balances the stresses on the loaded faces), the second is the energy norm."""
    overrides = {"quadrature.evaluation.cells": [24, 12, 12], "quadrature.boundary.cells": [12, 12],
                 "quadrature.boundary.order": 5} if name == "lame_sphere" else {}
    spec, setup = setup_of(name, overrides)
    physics, rule = setup.physics, setup.evaluation_rule
    e = lambda eps: energy_of(setup, Perturbed(physics.exact, eps, v))  # noqa: E731
    eps = 1e-3 * spec.model.output_scale
    first = (e(eps) - e(-eps)) / (2 * eps)
    second = (e(eps) + e(-eps) - 2 * e(0.0)) / eps**2
    grad_v = lambda x: Perturbed(physics.exact, 1.0, v).parts(x)[1]  # noqa: E731
    norm = float(rule.total(lambda b: physics.energy_norm(b.points, grad_v(b.points)), 1 << 16, "cpu", F64))
    # |dE/deps| against the change that a perturbation of the solution's own size U would make
    assert abs(first) < 1e-9 * norm * spec.model.output_scale
    assert second == pytest.approx(norm, rel=1e-6)


def test_ansatz_fixes_normal_components_on_rollers_and_everything_on_clamps():
    """Whatever the network: u_k = 0 on the symmetry plane normal to axis k (the other components
    free); u = the clamp data on the clamped end; and grad u is the gradient of u."""
    _, sphere = setup_of("lame_sphere")
    for face, axis in (("x0", 0), ("y0", 1), ("z0", 2)):
        points = sphere.domain.face_map(face)(torch.rand(40, 2, dtype=F64, generator=torch.Generator().manual_seed(3))).points
        u = sphere.trial.value(points)
        assert torch.all(u[:, axis] == 0) and torch.all(u[:, [a for a in range(3) if a != axis]].abs() > 0)
    _, beam = setup_of("bending_beam")
    end = beam.domain.face_map("xmin")(torch.rand(40, 2, dtype=F64, generator=torch.Generator().manual_seed(4))).points
    torch.testing.assert_close(beam.trial.value(end), beam.physics.exact.value(end), rtol=0, atol=1e-15)
    for setup in (sphere, beam):
        x = setup.domain.volume_map()(torch.rand(30, 3, dtype=F64, generator=torch.Generator().manual_seed(5))).points
        _, grad_u = setup.trial(x)
        xr = x.clone().requires_grad_(True)
        value = setup.trial.value(xr)
        rows = torch.stack([torch.autograd.grad(value[:, k].sum(), xr, retain_graph=True)[0] for k in range(3)], 1)
        torch.testing.assert_close(grad_u, rows, rtol=1e-12, atol=1e-15)


class Polynomial:
    """The trial function u = (x z, x y, x^2 + y) with its Jacobian (degree <= 2 per direction)."""

    def value(self, x):
        return torch.stack([x[:, 0] * x[:, 2], x[:, 0] * x[:, 1], x[:, 0] ** 2 + x[:, 1]], 1)

    def __call__(self, x):
        zero, one = torch.zeros_like(x[:, 0]), torch.ones_like(x[:, 0])
        jacobian = torch.stack([torch.stack([x[:, 2], zero, x[:, 0]], 1), torch.stack([x[:, 1], x[:, 0], zero], 1),
                                torch.stack([2 * x[:, 0], one, zero], 1)], 1)
        return self.value(x), jacobian


def variant(tmp_path, name: str, old: str, new: str, overrides: dict | None = None):
    """A bundled problem with one text replaced, built in float64."""
    text = (REPO / "problems" / f"{name}.toml").read_text()
    assert old in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(old, new))
    return assembled(path, overrides)


@pytest.mark.parametrize("value, expected", [
    # t = (E k z, 0, 0), u = (10 z, 10 y, 100 + y) on x = 10: t.u = 10 E k z^2, integral E k 10/12
    ('["E*kappa*z", "0", "0"]', -E * KAPPA * LENGTH / 12),
    # "auto": sigma(u*) n = (E k z, 0, 0), the same
    ('"auto"', -E * KAPPA * LENGTH / 12),
    # t = (z, y^2, 1 + y^2): t.u = 10 z^2 + 10 y^3 + (1 + y^2)(100 + y), integral 10/12 + 100 + 100/12
    ('["z", "y**2", "1 + y**2"]', -(100 + 110 / 12)),
])
def test_traction_term_is_exact_on_polynomials(tmp_path, value, expected):
    """The traction term -integral over x = 10 of t.u, for polynomial t and u, is exact."""
    _, setup = variant(tmp_path, "bending_beam", 'value = ["E*kappa*z", "0", "0"]', f"value = {value}")
    term = next(t for t in setup.terms if t.form.faces is not None)
    total = float(term.rule.total(lambda b: integrand(term.form, Polynomial(), b), 4096, "cpu", F64))
    assert total == pytest.approx(expected, rel=1e-13)


def test_derived_fields_of_the_bending_solution():
    """sigma = (E k z, 0, ...), eps = (k z, -nu k z, -nu k z, 0, 0, 0), von Mises E k |z|."""
    _, setup = setup_of("bending_beam")
    x = setup.domain.volume_map()(torch.rand(50, 3, dtype=F64, generator=torch.Generator().manual_seed(6))).points
    fields = setup.physics.derived(x, *setup.physics.exact(x))
    z, zero = x[:, 2], torch.zeros_like(x[:, 2])
    assert set(fields) == {"displacement", "strain", "stress", "von_mises"}
    torch.testing.assert_close(fields["displacement"], setup.physics.exact.value(x))
    torch.testing.assert_close(fields["stress"], torch.stack([E * KAPPA * z] + [zero] * 5, 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(fields["strain"], torch.stack([KAPPA * z, -NU * KAPPA * z, -NU * KAPPA * z] + [zero] * 3, 1),
                               rtol=0, atol=1e-15)
    torch.testing.assert_close(fields["von_mises"], E * KAPPA * z.abs(), rtol=1e-12, atol=1e-12)


def test_frame_fields_along_the_radius_are_lames():
    _, setup = setup_of("lame_sphere")
    profile = setup.domain.profile(9)
    values = setup.physics.frame_fields(*setup.physics.exact(profile.points), profile.frame, profile.axes)
    r = profile.coordinate
    torch.testing.assert_close(values["u_r"], u_r(r), rtol=1e-13, atol=0)
    torch.testing.assert_close(values["sigma_rr"], LAME_A - LAME_B / r**3, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(values["sigma_thetatheta"], LAME_A + LAME_B / (2 * r**3), rtol=1e-12, atol=1e-14)


def test_energy_norm_is_sigma_eps():
    _, setup = setup_of("elasticity_cube")
    lam, mu = lame(1.0, 0.3)
    grad = torch.randn(20, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(7))
    eps = (grad + grad.transpose(1, 2)) / 2
    expected = (stress(grad, lam, mu) * eps).sum((1, 2))
    torch.testing.assert_close(setup.physics.energy_norm(None, grad), expected)


def test_lame_parameters_give_the_same_physics(tmp_path):
    lam, mu = lame()
    lame_spec, by_lame = variant(tmp_path, "lame_sphere", "E = 1000.0\nnu = 0.3\nbody_force", f"lam = {lam!r}\nmu = {mu!r}\nbody_force")
    assert lame_spec.pde.lame == (lam, mu) and lame_spec.pde.poisson_ratio == pytest.approx(NU, rel=1e-15)
    young_spec, by_young = setup_of("lame_sphere")
    assert young_spec.pde.lame == pytest.approx((lam, mu), rel=1e-15)
    x = torch.rand(10, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(by_lame.physics.energy_norm(None, x), by_young.physics.energy_norm(None, x))


def test_nearly_incompressible_material_warns(tmp_path):
    with pytest.warns(VpinnWarning, match=r"pde.nu = 0.49 > 0.45: .*locks"):
        variant(tmp_path, "elasticity_cube", "nu = 0.3", "nu = 0.49")
