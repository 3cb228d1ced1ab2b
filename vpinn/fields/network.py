"""The neural field ``N_theta: R^3 -> R^m``: input scaling, optional domain coordinates and
Fourier features, an MLP, output scaling.

Inputs are first scaled to ``xi = (x - centre) / half_width`` in ``[-1, 1]^3`` so that the same
architecture behaves the same on any box.  A domain may add its natural coordinates ``c(x)``
(k of them, e.g. the hollow sphere's normalised radius; see
:class:`~vpinn.geometry.base.InputFeatures`), and with
``fourier_features = F > 0`` come ``sin/cos(2 pi xi B^T)`` with a fixed ``B`` (F, 3) ~
N(0, scale^2): the features are ``[xi, c, sin, cos]``.  Outputs are multiplied by
``output_scale`` (the solution's characteristic size), so that the MLP itself works with
numbers of order 1.
:meth:`Field.value_and_jacobian` returns the value and the Jacobian with respect to the physical
coordinates ``x``, by the method it was given (see :mod:`vpinn.fields.jacobian`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vpinn.fields.activations import ACTIVATIONS
from vpinn.fields.jacobian import JacobianMethod, fused
from vpinn.geometry.base import InputFeatures


class Field(nn.Module):
    """A fully connected network with ``depth`` hidden layers of ``width`` units.

    Parameters
    ----------
    out_features:
        Number of output components m (1 for a scalar potential, 3 for a displacement).
    width, depth, activation:
        Hidden layer size, number of hidden layers, and the activation's name
        (see :data:`~vpinn.fields.activations.ACTIVATIONS`).
    lower, upper:
        Bounding box of the domain, used to scale inputs to [-1, 1]^3.
    generator:
        Seeded CPU generator for the initial weights (so they do not depend on the device).
    coordinates:
        The domain's natural coordinates as extra inputs, or None.
    fourier_features, fourier_scale:
        Number F of random Fourier features and the standard deviation of their frequencies.
    output_scale:
        Factor on the outputs: the solution's characteristic size, in its units.
    jacobian:
        The method computing value and spatial Jacobian (one of
        :data:`~vpinn.fields.jacobian.JACOBIAN_METHODS`).
    dtype:
        The parameters' dtype.
    """

    def __init__(self, out_features: int, *, width: int, depth: int, activation: str, lower, upper,
                 generator: torch.Generator, coordinates: InputFeatures | None = None, fourier_features: int = 0,
                 fourier_scale: float = 1.0, output_scale: float = 1.0, jacobian: JacobianMethod = fused,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.coordinates = coordinates
        self.coordinate_count = coordinates.count if coordinates is not None else 0
        self.activation = ACTIVATIONS[activation]
        self.output_scale = float(output_scale)
        self.jacobian = jacobian
        lower, upper = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)
        self.register_buffer("centre", ((lower + upper) / 2).to(dtype))
        self.register_buffer("inverse_half_width", (2 / (upper - lower)).to(dtype))
        frequencies = torch.randn(fourier_features, 3, generator=generator, dtype=torch.float64)
        self.register_buffer("frequencies", (frequencies * fourier_scale).to(dtype))
        sizes = [3 + self.coordinate_count + 2 * fourier_features, *[width] * depth, out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            std = math.sqrt(2.0 / (fan_in + fan_out))  # Glorot (Xavier) normal
            weight = torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) * std
            self.weights.append(nn.Parameter(weight.to(dtype)))
            self.biases.append(nn.Parameter(torch.zeros(fan_out, dtype=dtype)))

    def flat_parameters(self) -> list[torch.Tensor]:
        """``[W_0, b_0, W_1, b_1, ...]``, the order the fused Jacobian expects."""
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        """``xi = (x - centre) / half_width`` (b, 3)."""
        return (x - self.centre.to(x.dtype)) * self.inverse_half_width.to(x.dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Network inputs (b, 3 + k + 2F) at physical points ``x`` (b, 3)."""
        xi = self.scaled(x)
        parts = [xi]
        if self.coordinates is not None:
            parts.append(self.coordinates(x)[0])
        if self.frequencies.shape[0]:
            angles = (2 * math.pi) * xi @ self.frequencies.to(x.dtype).T
            parts += [torch.sin(angles), torch.cos(angles)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def features_to_x(self, x: torch.Tensor, grad_features: torch.Tensor) -> torch.Tensor:
        """Chain rule: derivatives with respect to the features (b, m, 3 + k + 2F) -> w.r.t. ``x`` (b, m, 3)."""
        grad_xi = grad_features[..., :3]
        start = 3 + self.coordinate_count
        count = self.frequencies.shape[0]
        if count:
            frequencies = self.frequencies.to(x.dtype)
            angles = ((2 * math.pi) * self.scaled(x) @ frequencies.T)[:, None, :]
            grad_sin, grad_cos = grad_features[..., start : start + count], grad_features[..., start + count :]
            mixed = grad_sin * torch.cos(angles) - grad_cos * torch.sin(angles)
            grad_xi = grad_xi + (2 * math.pi) * mixed @ frequencies
        grad_x = grad_xi * self.inverse_half_width.to(x.dtype)
        if self.coordinates is not None:
            grad_x = grad_x + grad_features[..., 3:start] @ self.coordinates(x)[1]
        return grad_x

    def feature_tangents(self, x: torch.Tensor) -> torch.Tensor:
        """Derivatives of the features along each axis, ``d features / d x_j`` as (3, b, 3 + k + 2F)."""
        scale = self.inverse_half_width.to(x.dtype)
        parts = [torch.diag(scale).expand(x.shape[0], 3, 3).permute(1, 0, 2)]
        if self.coordinates is not None:
            parts.append(self.coordinates(x)[1].permute(2, 0, 1))
        if self.frequencies.shape[0]:
            frequencies = self.frequencies.to(x.dtype)
            angles = (2 * math.pi) * self.scaled(x) @ frequencies.T
            rate = (2 * math.pi) * (frequencies * scale).T[:, None, :]  # (3, 1, F)
            parts += [torch.cos(angles) * rate, -torch.sin(angles) * rate]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def network(self, h: torch.Tensor) -> torch.Tensor:
        """The MLP on features ``h`` (b, n_features) -> (b, m)."""
        for weight, bias in zip(self.weights[:-1], self.biases[:-1]):
            h = self.activation.value(torch.addmm(bias, h, weight.T))
        return torch.addmm(self.biases[-1], h, self.weights[-1].T)

    def unscaled(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP's values (b, m) at physical points ``x`` (b, 3), before output scaling."""
        return self.network(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Values (b, m) at physical points ``x`` (b, 3)."""
        return self.unscaled(x) * self.output_scale

    def value_and_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values (b, m) and spatial Jacobian ``dN_k/dx_j`` (b, m, 3) at ``x`` (b, 3)."""
        value, jacobian = self.jacobian(self, x)
        return value * self.output_scale, jacobian * self.output_scale
