"""Networks: every derivative method agrees with autograd; the ansatz's product rule; the
distance function."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import central_differences
from vpinn.fields import JACOBIAN_METHODS, Field
from vpinn.fields.ansatz import HardDirichletAnsatz
from vpinn.geometry import Box

F64 = torch.float64
LOWER, UPPER = (0.0, -1.0, 2.0), (1.0, 1.0, 2.5)


def make_field(outputs: int = 1, derivatives: str = "fused", **model) -> Field:
    options = {"width": 12, "depth": 3, "activation": "tanh", **model}
    return Field(outputs, lower=LOWER, upper=UPPER, generator=torch.Generator().manual_seed(4),
                 jacobian=JACOBIAN_METHODS[derivatives], dtype=F64, **options)


def sample_points(n: int = 40) -> torch.Tensor:
    u = torch.rand(n, 3, dtype=F64, generator=torch.Generator().manual_seed(8))
    return torch.tensor(LOWER, dtype=F64) + u * (torch.tensor(UPPER, dtype=F64) - torch.tensor(LOWER, dtype=F64))


@pytest.mark.parametrize("activation", ["tanh", "sin", "silu"])
@pytest.mark.parametrize("fourier", [0, 3])
@pytest.mark.parametrize("outputs", [1, 3])
def test_autograd_jacobian_matches_finite_differences(activation, fourier, outputs):
    field, x = make_field(outputs, activation=activation, fourier_features=fourier), sample_points(5)
    _, jacobian = JACOBIAN_METHODS["autograd"](field, x)
    torch.testing.assert_close(jacobian, central_differences(field, x), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("method", ["fused", "forward", "func"])
@pytest.mark.parametrize("activation", ["tanh", "sin", "silu"])
@pytest.mark.parametrize("fourier", [0, 3])
@pytest.mark.parametrize("outputs", [1, 3])
def test_methods_agree_with_autograd(method, activation, fourier, outputs):
    """Values, Jacobians and the parameter gradient of a loss using both agree to 1e-10."""
    field, x = make_field(outputs, activation=activation, fourier_features=fourier), sample_points()
    weights = torch.rand(x.shape[0], outputs, 3, dtype=F64, generator=torch.Generator().manual_seed(2))

    def value_jacobian_and_gradient(name):
        value, jacobian = JACOBIAN_METHODS[name](field, x)
        loss = (value.sum(1) * value.sum(1)).sum() + (weights * jacobian * jacobian).sum()
        return value, jacobian, torch.autograd.grad(loss, list(field.parameters()))

    reference = value_jacobian_and_gradient("autograd")
    candidate = value_jacobian_and_gradient(method)
    torch.testing.assert_close(candidate[0], reference[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(candidate[1], reference[1], rtol=1e-10, atol=1e-10)
    for ours, theirs in zip(candidate[2], reference[2]):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_distance_vanishes_on_chosen_faces_only():
    box = Box(LOWER, UPPER)
    distance = box.distance(("xmin", "xmax", "ymin"))
    x = sample_points(200)
    d, _ = distance(x)
    assert torch.all(d > 0) and float(d.max()) <= 1.0
    on_faces = x.clone()
    on_faces[:, 0] = LOWER[0]
    assert torch.all(distance(on_faces)[0] == 0)
    on_faces[:, 0] = UPPER[0]
    assert torch.all(distance(on_faces)[0] == 0)
    free = x.clone()
    free[:, 2] = UPPER[2]  # zmax is not a Dirichlet face
    assert torch.all(distance(free)[0] > 0)
    centre = torch.tensor([[0.5, 1.0, 2.25]], dtype=F64)  # x mid, y at ymax: both factors 1
    assert float(box.distance(("xmin", "xmax", "ymin"))(centre)[0]) == pytest.approx(1.0)


def test_ansatz_gradient_is_the_gradient_of_its_value():
    """grad(g + d N) from the product rule equals autograd of the composed value."""
    field, x = make_field(1), sample_points()
    box = Box(LOWER, UPPER)
    lift = lambda p: torch.sin(p[:, 0]) * p[:, 1] + p[:, 2] ** 2  # noqa: E731
    ansatz = HardDirichletAnsatz(field, [box.distance(("xmin", "ymax", "zmin"))], [lift])
    u, grad_u = ansatz(x)
    xr = x.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(ansatz.value(xr).sum(), xr)
    torch.testing.assert_close(grad_u[:, 0], reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(u, ansatz.value(x), rtol=1e-14, atol=1e-14)
    on_face = x.clone()
    on_face[:, 1] = UPPER[1]
    torch.testing.assert_close(ansatz.value(on_face)[:, 0], lift(on_face), rtol=1e-14, atol=1e-14)
