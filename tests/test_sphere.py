"""The hollow-sphere octant a <= r <= b, x, y, z >= 0: measures of its rules to 1e-12, surface
rules on polynomials, normals, distance functions, the radial input coordinate and the radial
profile line.

Closed forms: volume (b^3 - a^3) pi/6; spherical faces a^2 pi/2 and b^2 pi/2; each symmetry
plane a quarter annulus (b^2 - a^2) pi/4; on the octant of the sphere of radius R,
integral of x^2 dS = pi R^4 / 6 and integral of x y z dS = R^5 / 8.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import central_differences
from vpinn.fields import JACOBIAN_METHODS, Field
from vpinn.geometry import SphereOctant
from vpinn.quadrature import ConcatRule, GaussRule

F64 = torch.float64
A, B = 1.0, 4.0
SPHERE = SphereOctant(A, B)


def integrate(rule, fn) -> float:
    return float(rule.total(lambda batch: fn(batch.points), 1 << 16, "cpu", F64))


def one(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x[:, 0])


def test_volume_and_areas_to_1e_12():
    volume = integrate(GaussRule(SPHERE.volume_map(), (2, 8, 8), 6), one)
    assert volume == pytest.approx((B**3 - A**3) * math.pi / 6, rel=1e-12, abs=0)
    assert SPHERE.volume == pytest.approx(volume, rel=1e-12, abs=0)
    areas = {face: integrate(GaussRule(SPHERE.face_map(face), (8, 8), 6), one) for face in ("inner", "outer", "x0", "y0", "z0")}
    assert areas["inner"] == pytest.approx(A**2 * math.pi / 2, rel=1e-12, abs=0)
    assert areas["outer"] == pytest.approx(B**2 * math.pi / 2, rel=1e-12, abs=0)
    for plane in ("x0", "y0", "z0"):
        assert areas[plane] == pytest.approx((B**2 - A**2) * math.pi / 4, rel=1e-12, abs=0)


def test_volume_rule_has_the_spherical_jacobian():
    """integral of r^2 over the octant = (b^5 - a^5)/5 * pi/2 (r^4 dr times the solid angle pi/2)."""
    value = integrate(GaussRule(SPHERE.volume_map(), (2, 8, 8), 4), lambda x: (x * x).sum(1))
    assert value == pytest.approx((B**5 - A**5) / 5 * math.pi / 2, rel=1e-12, abs=0)


@pytest.mark.parametrize("face, radius", [("inner", A), ("outer", B)])
def test_surface_rules_on_polynomials(face, radius):
    rule = GaussRule(SPHERE.face_map(face), (8, 8), 6)
    assert integrate(rule, lambda x: x[:, 0] ** 2) == pytest.approx(math.pi * radius**4 / 6, rel=1e-12, abs=0)
    assert integrate(rule, lambda x: x[:, 0] * x[:, 1] * x[:, 2]) == pytest.approx(radius**5 / 8, rel=1e-12, abs=0)


def test_points_and_normals_of_every_face():
    rule = ConcatRule([GaussRule(SPHERE.face_map(f), (3, 2), 2) for f in ("inner", "outer", "x0", "y0", "z0")])
    batch = rule.take(torch.arange(rule.size), F64)
    x, n = batch.points, batch.normals
    r = x.norm(dim=1)
    size = 3 * 2 * 4
    inner, outer = slice(0, size), slice(size, 2 * size)
    torch.testing.assert_close(r[inner], torch.full_like(r[inner], A), rtol=0, atol=1e-14)
    torch.testing.assert_close(r[outer], torch.full_like(r[outer], B), rtol=0, atol=1e-14)
    torch.testing.assert_close(n[inner], -x[inner] / A, rtol=0, atol=1e-14)  # into the cavity
    torch.testing.assert_close(n[outer], x[outer] / B, rtol=0, atol=1e-14)
    for k in range(3):
        plane = slice((2 + k) * size, (3 + k) * size)
        assert torch.all(x[plane, k] == 0) and torch.all(x[plane] >= 0)
        assert torch.all((A - 1e-14 <= r[plane]) & (r[plane] <= B + 1e-14))
        expected = torch.zeros(3, dtype=F64)
        expected[k] = -1.0
        assert torch.all(n[plane] == expected)
    assert torch.all((x >= 0) & (x <= B))


def sample_points(n: int = 300) -> torch.Tensor:
    params = torch.rand(n, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    return SPHERE.volume_map()(params).points


@pytest.mark.parametrize("faces", [("inner",), ("outer",), ("inner", "outer"), ("x0",), ("inner", "y0", "z0"),
                                   ("outer", "x0", "y0", "z0"), ()])
def test_distance_vanishes_on_chosen_faces_and_has_its_gradient(faces):
    distance = SPHERE.distance(faces)
    x = sample_points()
    d, grad = distance(x)
    assert torch.all(d > 0) and float(d.max()) <= 1.0 + 1e-15
    xr = x.clone().requires_grad_(True)
    value = distance(xr)[0]
    reference = torch.autograd.grad(value.sum(), xr)[0] if value.requires_grad else torch.zeros_like(x)
    torch.testing.assert_close(grad, reference, rtol=1e-12, atol=1e-14)
    for face in ("inner", "outer", "x0", "y0", "z0"):
        on_face = GaussRule(SPHERE.face_map(face), (3, 3), 2).take(torch.arange(36), F64).points
        values = distance(on_face)[0]
        if face not in faces:
            assert torch.all(values > 0), face
        else:  # exactly 0 on the planes; on the spheres up to the round-off of |x| = r
            assert float(values.abs().max()) <= (0 if face in ("x0", "y0", "z0") else 1e-15), face


def test_normalised_radial_distance_reaches_one():
    r = torch.tensor([A, (A + B) / 2, B], dtype=F64)
    points = r[:, None] * torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    assert SPHERE.distance(("inner", "outer"))(points)[0].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-15)


def test_profile_is_a_radius_with_the_spherical_frame():
    profile = SPHERE.profile(11)
    r = profile.coordinate
    assert profile.label == "r" and profile.axes == ("r", "theta", "phi")
    assert float(r[0]) == A and float(r[-1]) == B
    torch.testing.assert_close(profile.points.norm(dim=1), r, rtol=1e-15, atol=0)
    torch.testing.assert_close(profile.frame[:, 0], profile.points / r[:, None], rtol=1e-15, atol=1e-15)
    gram = profile.frame @ profile.frame.transpose(1, 2)
    torch.testing.assert_close(gram, torch.eye(3, dtype=F64).expand_as(gram), rtol=0, atol=1e-15)
    assert torch.all(profile.frame[:, 1, 2] < 0)  # e_theta points away from the z axis: dz/dtheta < 0


@pytest.mark.parametrize("method", ["fused", "forward", "func", "autograd"])
@pytest.mark.parametrize("fourier", [0, 2])
def test_radial_coordinate_input_keeps_every_jacobian_exact(method, fourier):
    """With the normalised radius as a fourth input, each method's Jacobian equals central
    differences of the network (the chain rule through r = |x| is right in all four)."""
    field = Field(3, width=10, depth=2, activation="tanh", lower=SPHERE.lower, upper=SPHERE.upper,
                  generator=torch.Generator().manual_seed(2), coordinates=SPHERE.input_features(),
                  fourier_features=fourier, output_scale=0.5, jacobian=JACOBIAN_METHODS[method], dtype=F64)
    assert field.weights[0].shape[1] == 4 + 2 * fourier
    x = sample_points(7)
    value, jacobian = field.value_and_jacobian(x)
    torch.testing.assert_close(value, field(x), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(jacobian, central_differences(field, x), rtol=1e-7, atol=1e-9)
    rho, grad = SPHERE.input_features()(x)
    r = x.norm(dim=1)
    torch.testing.assert_close(rho[:, 0], 2 * (r - A) / (B - A) - 1)
    assert float(rho.min()) >= -1 and float(rho.max()) <= 1
    torch.testing.assert_close(grad[:, 0], 2 / (B - A) * x / r[:, None])
