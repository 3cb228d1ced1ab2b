"""Per-point parameter Jacobians of the value and spatial gradient: agreement with torch.func,
a finite-difference check against the field's own spatial Jacobian, and (``-m slow -s``) timings
against ``torch.func.vmap(jacrev(...))``."""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from vpinn.fields import Field
from vpinn.fields.parameter_jacobian import parameter_jacobian_bytes, parameter_jacobian_rows, parameter_jacobians

F64 = torch.float64
LOWER, UPPER = (0.0, -1.0, 2.0), (1.0, 1.0, 2.5)


class Radius:
    """One extra input, the distance from the box's centre, and its Jacobian (b, 1, 3)."""

    count = 1

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offset = x - torch.tensor([0.5, 0.0, 2.25], dtype=x.dtype)
        radius = offset.norm(dim=1, keepdim=True)
        return radius, (offset / radius)[:, None, :]


def make_field(outputs: int = 1, **model) -> Field:
    model = {"width": 7, "depth": 3, "activation": "tanh", **model}
    return Field(outputs, lower=LOWER, upper=UPPER, generator=torch.Generator().manual_seed(4), dtype=F64, **model)


def sample_points(n: int, seed: int = 8) -> torch.Tensor:
    u = torch.rand(n, 3, dtype=F64, generator=torch.Generator().manual_seed(seed))
    lower, upper = torch.tensor(LOWER, dtype=F64), torch.tensor(UPPER, dtype=F64)
    return lower + u * (upper - lower)


def mlp(field: Field, flat: list[torch.Tensor], point: torch.Tensor) -> torch.Tensor:
    """The field's unscaled MLP at one point (3,) -> (m,), with parameters ``flat`` in
    ``flat_parameters()`` order.  (``functional_call`` on the field itself would not do: its
    ``network`` slices the ParameterLists, and the slices lose the substituted tensors.)"""
    h = field.features(point[None])[0]
    for weight, bias in zip(flat[0:-2:2], flat[1:-2:2]):
        h = field.activation.value(weight @ h + bias)
    return flat[-2] @ h + flat[-1]


def func_parameter_jacobians(field: Field, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: ``vmap(jacrev)`` over the parameters of ``[N, dN/dx]`` (itself by jacrev)
    at single points; same shapes and parameter order as :func:`parameter_jacobians`."""
    parameters = [p.detach() for p in field.flat_parameters()]
    m = field.weights[-1].shape[0]

    def value_and_gradient(flat: list[torch.Tensor], point: torch.Tensor) -> torch.Tensor:
        value = mlp(field, flat, point)
        return torch.cat([value, torch.func.jacrev(lambda p: mlp(field, flat, p))(point).reshape(-1)])

    pieces = torch.func.vmap(torch.func.jacrev(value_and_gradient), in_dims=(None, 0))(parameters, x)
    rows = torch.cat([piece.reshape(x.shape[0], 4 * m, -1) for piece in pieces], dim=2)
    return rows[:, :m], rows[:, m:].reshape(x.shape[0], m, 3, -1)


def autograd_parameter_jacobians(field: Field, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A second reference on the field's own code: ``torch.autograd.grad`` row by row."""
    x = x.detach().requires_grad_(True)
    value = field.unscaled(x)
    gradient = torch.stack([torch.autograd.grad(value[:, k].sum(), x, create_graph=True)[0]
                            for k in range(value.shape[1])], dim=1)
    rows = torch.cat([value[:, :, None], gradient], dim=2)  # (b, m, 4): N_k, dN_k/dx_j
    jacobian = torch.stack([
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(number, field.flat_parameters(), retain_graph=True)])
        for number in rows.reshape(-1)
    ]).reshape(*rows.shape, -1)
    return jacobian[:, :, 0], jacobian[:, :, 1:]


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("activation", ["tanh", "sin", "silu"])
@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("fourier", [0, 3])
@pytest.mark.parametrize("depth", [1, 3])
def test_matches_torch_func(activation, outputs, fourier, depth):
    field = make_field(outputs, activation=activation, fourier_features=fourier, depth=depth)
    x = sample_points(9)
    jac_value, jac_grad = parameter_jacobians(field, x)
    ref_value, ref_grad = func_parameter_jacobians(field, x)
    parameters = sum(p.numel() for p in field.parameters())
    assert jac_value.shape == (9, outputs, parameters) and jac_grad.shape == (9, outputs, 3, parameters)
    assert jac_value.dtype == F64
    assert_relative(jac_value, ref_value, 1e-12)
    assert_relative(jac_grad, ref_grad, 1e-12)


def test_matches_autograd_on_the_field_itself():
    field = make_field(3, activation="sin", fourier_features=2)
    x = sample_points(4)
    for ours, reference in zip(parameter_jacobians(field, x), autograd_parameter_jacobians(field, x)):
        assert_relative(ours, reference, 1e-12)


def test_matches_torch_func_with_domain_coordinates():
    field = make_field(3, coordinates=Radius(), activation="silu", fourier_features=2)
    x = sample_points(6)
    for ours, reference in zip(parameter_jacobians(field, x), func_parameter_jacobians(field, x)):
        assert_relative(ours, reference, 1e-12)


def test_directional_derivative_of_the_spatial_jacobian():
    """``jac_grad @ d`` is the parameter derivative along ``d`` of ``value_and_jacobian``'s
    spatial Jacobian (central differences; the output scale divided out)."""
    field = make_field(3, activation="tanh", fourier_features=2, output_scale=2.5)
    x = sample_points(20)
    jac_value, jac_grad = parameter_jacobians(field, x)
    generator = torch.Generator().manual_seed(3)
    direction = [torch.randn(p.shape, dtype=F64, generator=generator) for p in field.flat_parameters()]
    flat_direction = torch.cat([d.reshape(-1) for d in direction])
    step = 1e-5

    def shifted(sign: float) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            for p, d in zip(field.flat_parameters(), direction):
                p.add_(d, alpha=sign * step)
            value, jacobian = field.value_and_jacobian(x)
            for p, d in zip(field.flat_parameters(), direction):
                p.sub_(d, alpha=sign * step)
        return value / field.output_scale, jacobian / field.output_scale

    (value_plus, jacobian_plus), (value_minus, jacobian_minus) = shifted(1.0), shifted(-1.0)
    assert_relative(jac_grad @ flat_direction, (jacobian_plus - jacobian_minus) / (2 * step), 1e-6)
    assert_relative(jac_value @ flat_direction, (value_plus - value_minus) / (2 * step), 1e-6)


def test_out_buffer_is_filled_and_returned():
    """A reused buffer, even full of garbage, gives the same numbers as a fresh one."""
    field, x = make_field(3, activation="silu", depth=2), sample_points(5)
    fresh = parameter_jacobian_rows(field, x)
    out = torch.full_like(fresh, float("nan"))
    jac_value, jac_grad = parameter_jacobians(field, x, out=out)
    assert jac_value.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, fresh, rtol=0, atol=0)
    torch.testing.assert_close(jac_grad, fresh[:, 3:].reshape(5, 3, 3, -1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="shape"):
        parameter_jacobian_rows(field, x, out=out[:, :, 1:])


def test_bytes():
    field, x = make_field(3), sample_points(5)
    jac_value, jac_grad = parameter_jacobians(field, x)
    parameters = jac_value.shape[-1]
    expected = (jac_value.numel() + jac_grad.numel()) * jac_value.element_size()
    assert parameter_jacobian_bytes(5, 3, parameters, F64) == expected
    assert parameter_jacobian_bytes(5, 3, parameters, torch.float32) == expected // 2


def median_seconds(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.mark.slow
@pytest.mark.parametrize(("width", "points"), [(32, 4096), (64, 1024)])
def test_timing_against_torch_func(width, points):
    """Prints the median of 5 timings of both; asserts nothing about time."""
    field = make_field(1, width=width, depth=2 if width == 32 else 3)
    x = sample_points(points)
    parameters = sum(p.numel() for p in field.parameters())
    ours = median_seconds(lambda: parameter_jacobians(field, x))
    out = torch.empty(points, 4, parameters, dtype=F64)
    reused = median_seconds(lambda: parameter_jacobians(field, x, out=out))
    theirs = median_seconds(lambda: func_parameter_jacobians(field, x))
    megabytes = parameter_jacobian_bytes(points, 1, parameters, F64) / 2**20
    print(f"\nb={points} width={width} P={parameters} ({megabytes:.0f} MiB): hand-written {ours:.4f} s "
          f"({reused:.4f} s into a reused buffer), torch.func {theirs:.4f} s, ratio {theirs / ours:.1f}")
