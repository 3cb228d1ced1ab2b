"""The neural field ``N_theta: R^3 -> R^m``: input scaling, optional Fourier features, an MLP.

Inputs are first scaled to ``xi = (x - centre) / half_width`` in ``[-1, 1]^3`` so that the same
architecture behaves the same on any box.  With ``fourier_features = F > 0`` the features are
``[xi, sin(2 pi xi B^T), cos(2 pi xi B^T)]`` with a fixed ``B`` (F, 3) ~ N(0, scale^2).
:meth:`Field.value_and_jacobian` returns the value and the Jacobian with respect to the physical
coordinates ``x``, by the method named in the model spec (see :mod:`vpinn.fields.jacobian`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vpinn.fields.activations import ACTIVATIONS
from vpinn.fields.jacobian import JACOBIAN_METHODS
from vpinn.problem.spec import ModelSpec


class Field(nn.Module):
    """A fully connected network with ``spec.depth`` hidden layers of ``spec.width`` units.

    Parameters
    ----------
    spec:
        The ``[model]`` section.
    out_features:
        Number of output components m (1 for a scalar potential, 3 for a displacement).
    lower, upper:
        Bounding box of the domain, used to scale inputs to [-1, 1]^3.
    generator:
        Seeded CPU generator for the initial weights (so they do not depend on the device).
    """

    def __init__(self, spec: ModelSpec, out_features: int, lower, upper, generator: torch.Generator):
        super().__init__()
        self.spec = spec
        self.activation = ACTIVATIONS[spec.activation]
        lower, upper = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)
        self.register_buffer("centre", (lower + upper) / 2)
        self.register_buffer("inverse_half_width", 2 / (upper - lower))
        frequencies = torch.randn(spec.fourier_features, 3, generator=generator, dtype=torch.float64)
        self.register_buffer("frequencies", frequencies * spec.fourier_scale)
        sizes = [3 + 2 * spec.fourier_features, *[spec.width] * spec.depth, out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            std = math.sqrt(2.0 / (fan_in + fan_out))  # Glorot (Xavier) normal
            self.weights.append(nn.Parameter(torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) * std))
            self.biases.append(nn.Parameter(torch.zeros(fan_out, dtype=torch.float64)))
        self.float()

    @property
    def out_features(self) -> int:
        return self.weights[-1].shape[0]

    def flat_parameters(self) -> list[torch.Tensor]:
        """``[W_0, b_0, W_1, b_1, ...]``, the order the fused Jacobian expects."""
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        """``xi = (x - centre) / half_width`` (b, 3)."""
        return (x - self.centre.to(x.dtype)) * self.inverse_half_width.to(x.dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Network inputs (b, 3 + 2F) at physical points ``x`` (b, 3)."""
        xi = self.scaled(x)
        if self.frequencies.shape[0] == 0:
            return xi
        angles = (2 * math.pi) * xi @ self.frequencies.to(x.dtype).T
        return torch.cat([xi, torch.sin(angles), torch.cos(angles)], dim=1)

    def features_to_x(self, x: torch.Tensor, grad_features: torch.Tensor) -> torch.Tensor:
        """Chain rule: derivatives with respect to the features (b, m, 3 + 2F) -> w.r.t. ``x`` (b, m, 3)."""
        grad_xi = grad_features[..., :3]
        count = self.frequencies.shape[0]
        if count:
            frequencies = self.frequencies.to(x.dtype)
            angles = ((2 * math.pi) * self.scaled(x) @ frequencies.T)[:, None, :]
            grad_sin, grad_cos = grad_features[..., 3 : 3 + count], grad_features[..., 3 + count :]
            mixed = grad_sin * torch.cos(angles) - grad_cos * torch.sin(angles)
            grad_xi = grad_xi + (2 * math.pi) * mixed @ frequencies
        return grad_xi * self.inverse_half_width.to(x.dtype)

    def feature_tangents(self, x: torch.Tensor) -> torch.Tensor:
        """Derivatives of the features along each axis, ``d features / d x_j`` as (3, b, 3 + 2F)."""
        scale = self.inverse_half_width.to(x.dtype)
        eye = torch.diag(scale).expand(x.shape[0], 3, 3).permute(1, 0, 2)
        if self.frequencies.shape[0] == 0:
            return eye
        frequencies = self.frequencies.to(x.dtype)
        angles = (2 * math.pi) * self.scaled(x) @ frequencies.T
        rate = (2 * math.pi) * (frequencies * scale).T[:, None, :]  # (3, 1, F)
        return torch.cat([eye, torch.cos(angles) * rate, -torch.sin(angles) * rate], dim=2)

    def network(self, h: torch.Tensor) -> torch.Tensor:
        """The MLP on features ``h`` (b, n_features) -> (b, m)."""
        for weight, bias in zip(self.weights[:-1], self.biases[:-1]):
            h = self.activation.value(torch.addmm(bias, h, weight.T))
        return torch.addmm(self.biases[-1], h, self.weights[-1].T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Values (b, m) at physical points ``x`` (b, 3)."""
        return self.network(self.features(x))

    def value_and_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values (b, m) and spatial Jacobian ``dN_k/dx_j`` (b, m, 3) at ``x`` (b, 3)."""
        return JACOBIAN_METHODS[self.spec.derivatives](self, x)
