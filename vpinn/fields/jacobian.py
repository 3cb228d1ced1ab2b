"""Ways to compute a network's value and spatial Jacobian, all giving the same numbers.

Energy losses need ``N`` and ``dN/dx`` at every point, and then the gradient of the loss with
respect to the parameters.  Four candidates (``run.py bench --methods all`` times them):

``fused``
    Hand-written reverse mode inside one :class:`torch.autograd.Function`.  The forward pass
    runs the MLP and then the backward chain ``g_{l-1} = (g_l * s'(z_l)) W_l`` for ``dN/dh_0``;
    its ``backward`` is the exact adjoint of both chains ("double backprop" written out), so
    every hidden layer costs 6 matrix products and a handful of element-wise operations, with no
    autograd graph of the inner derivative.
``autograd``
    ``torch.autograd.grad(N, x, create_graph=True)``, one call per output component.
``forward``
    Forward-mode tangents: the 3 directions propagate beside the values, ``dz = dh W^T``.
``func``
    ``torch.func.vmap(torch.func.jacrev(...))`` over single points.

Every method returns ``(value (b, m), jacobian (b, m, 3))`` of the MLP before output scaling
(:meth:`Field.unscaled`), with respect to physical ``x``; :meth:`Field.value_and_jacobian` scales.
"""

from __future__ import annotations

from typing import Callable

import torch

from vpinn.fields.activations import Activation

Tensor = torch.Tensor


class _FusedMLP(torch.autograd.Function):
    """Value and input gradient of an MLP with a hand-written backward.

    Inputs: features ``h0`` (b, n) that need no gradient, the activation, and the parameters
    ``W_0, b_0, ..., W_L, b_L``.  Outputs: value (b, m) and ``g_0 = dN/dh0`` as (m, b, n).

    Kept for backward, per hidden layer: ``h_l``, ``s'(z_l)`` and the chain's ``g_l`` (plus
    ``z_l`` if the activation's derivatives need it).  When the activation knows
    ``s''/s'`` in closed form (tanh: ``-2h``), ``delta_l = g_l s'_l`` is kept instead of ``g_l``: the
    adjoint then needs neither ``g_l`` nor a recomputed ``delta_l``, which saves a tensor and two
    element-wise passes per layer.  Buffers are reused in place where the algebra allows.
    """

    @staticmethod
    def forward(ctx, h0: Tensor, activation: Activation, *params: Tensor):
        weights, biases = params[0::2], params[1::2]
        hs, zs = [h0], []
        h = h0
        for weight, bias in zip(weights[:-1], biases[:-1]):
            z = torch.addmm(bias, h, weight.T)
            if activation.needs_z:
                h = activation.value(z)
                zs.append(z)
            else:
                h = activation.value_(z)  # in place: z is not needed again
                zs.append(None)
            hs.append(h)
        value = torch.addmm(biases[-1], h, weights[-1].T)
        # Backward chain for dN/dh0: g_L = W_L (m, 1, w); g_{l-1} = (g_l * s'_l) @ W_{l-1}.
        g = weights[-1][:, None, :]
        slopes, chain = [], []  # chain: delta_l if the activation has a curvature ratio, else g_l
        for layer in range(len(weights) - 2, -1, -1):
            slope = activation.first(zs[layer], hs[layer + 1])
            slopes.append(slope)
            delta = g * slope
            chain.append(delta if activation.ratio_ is not None else g)
            g = delta @ weights[layer]
        ctx.activation = activation
        ctx.slopes, ctx.chain, ctx.zs = slopes[::-1], chain[::-1], zs
        ctx.save_for_backward(*hs, *params)
        return value, g

    @staticmethod
    def backward(ctx, value_bar: Tensor, g0_bar: Tensor):
        activation, slopes, chain, zs = ctx.activation, ctx.slopes, ctx.chain, ctx.zs
        saved = ctx.saved_tensors
        hidden = len(slopes)
        hs, params = saved[: hidden + 1], saved[hidden + 1 :]
        weights = params[0::2]
        outputs = weights[-1].shape[0]
        grad_w: list[Tensor] = []
        z_bar: list[Tensor] = []
        # Adjoint of the derivative chain, from the input side up.
        g_bar = g0_bar
        for layer in range(hidden):
            slope, z, h = slopes[layer], zs[layer], hs[layer + 1]
            n_out, n_in = weights[layer].shape
            ratio = activation.ratio_ is not None
            delta = chain[layer] if ratio else chain[layer] * slope  # (m, b, w), as in the forward chain
            grad_w.append(delta.reshape(-1, n_out).T @ g_bar.reshape(-1, n_in))
            delta_bar = g_bar @ weights[layer].T
            # z_bar = s'' * sum_m delta_bar * g_l, computed into delta's buffer: with a ratio as
            # (s''/s') * sum_m delta_bar * delta, else directly.
            product = torch.mul(delta_bar, delta if ratio else chain[layer], out=delta)
            summed = product[0] if outputs == 1 else product.sum(0)
            chain[layer] = None  # free it as soon as it is used
            z_bar.append(activation.ratio_(summed, z, h) if ratio else summed.mul_(activation.second(z, h, slope)))
            g_bar = delta_bar.mul_(slope)
        grad_w.append(g_bar.sum(1))  # g_L = W_L broadcast over the batch
        # Adjoint of the value chain, from the output down.
        grad_w[-1] = grad_w[-1].addmm_(value_bar.T, hs[-1])
        grad_b = [value_bar.sum(0)]
        h_bar = value_bar @ weights[-1]
        for layer in range(hidden - 1, -1, -1):
            pre_bar = z_bar[layer].addcmul_(h_bar, slopes[layer])
            grad_w[layer] = grad_w[layer].addmm_(pre_bar.T, hs[layer])
            grad_b.append(pre_bar.sum(0))
            if layer:
                h_bar = pre_bar @ weights[layer]
            z_bar[layer] = None
        grad_b.reverse()
        grads = [g for pair in zip(grad_w, grad_b) for g in pair]
        return (None, None, *grads)


def fused(field, x: Tensor) -> tuple[Tensor, Tensor]:
    """Value and Jacobian by the hand-written double backprop (:class:`_FusedMLP`)."""
    value, g0 = _FusedMLP.apply(field.features(x), field.activation, *field.flat_parameters())
    return value, field.features_to_x(x, g0.permute(1, 0, 2))


def reverse_autograd(field, x: Tensor) -> tuple[Tensor, Tensor]:
    """Value and Jacobian by ``torch.autograd.grad(..., create_graph=True)`` per component."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = field.unscaled(x)
        rows = [
            torch.autograd.grad(value[:, k].sum(), x, create_graph=True)[0]
            for k in range(value.shape[1])
        ]
    return value, torch.stack(rows, dim=1)


def forward_tangents(field, x: Tensor) -> tuple[Tensor, Tensor]:
    """Value and Jacobian by forward-mode tangents, the 3 directions side by side (3, b, w)."""
    h, tangent = field.features(x), field.feature_tangents(x)
    for weight, bias in zip(field.weights[:-1], field.biases[:-1]):
        z = torch.addmm(bias, h, weight.T)
        h = field.activation.value(z)
        tangent = (tangent @ weight.T) * field.activation.first(z, h)
    value = torch.addmm(field.biases[-1], h, field.weights[-1].T)
    return value, (tangent @ field.weights[-1].T).permute(1, 2, 0)


def func_jacrev(field, x: Tensor) -> tuple[Tensor, Tensor]:
    """Value and Jacobian by ``torch.func.vmap(torch.func.jacrev)`` over single points."""

    def single(point: Tensor) -> tuple[Tensor, Tensor]:
        value = field.unscaled(point[None])[0]
        return value, value

    jacobian, value = torch.func.vmap(torch.func.jacrev(single, has_aux=True))(x)
    return value, jacobian


#: (field, x (b, 3)) -> (value (b, m), Jacobian (b, m, 3)) of the unscaled MLP
JacobianMethod = Callable[..., tuple[Tensor, Tensor]]

JACOBIAN_METHODS: dict[str, JacobianMethod] = {
    "fused": fused,
    "autograd": reverse_autograd,
    "forward": forward_tangents,
    "func": func_jacrev,
}
