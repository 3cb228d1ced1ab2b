"""Per-point Jacobians of an MLP's value and spatial gradient with respect to its parameters.

The energy natural gradient (Gauss-Newton) optimiser builds the Gram matrix
``G = sum_i w_i J_i^T H_i J_i`` from, at every point ``x_i``, the derivative ``J_i`` of the
``4m`` numbers ``N_k`` and ``dN_k/dx_j`` with respect to all P parameters.
``torch.func.vmap(jacrev(...))`` gets them by nested autodiff and takes seconds for a few
hundred points; here they are written out by hand, batched over points.

Forward: values ``h_l`` and the 3 spatial tangents ``t_l = dh_l/dx_j`` per layer,
``z_l = h_{l-1} W_l^T + b_l``, ``zdot_l = t_{l-1} W_l^T``, ``h_l = s(z_l)``, ``t_l = s'(z_l) zdot_l``,
and ``N = h_L W^T + b``, ``dN/dx_j = t_{L,j} W^T`` at the output.

Backward, one adjoint per output row: rows of the value ``N_k`` need only the adjoint of ``h``,
the familiar ``g_l = dN_k/dh_l`` with ``delta_l = g_l s'_l`` and ``g_{l-1} = delta_l W_l``.  A row
of ``dN_k/dx_j`` has adjoints ``u_l`` of ``h_l`` and ``v_l`` of ``t_{l,j}`` only (the 3 tangent
directions never mix), and ``v_l`` obeys the same recursion with the same seed ``W[k]`` as
``g_l``, so ``v_l = g_l``.  Through a hidden layer

    zbar    = u_l s'_l + g_l s''_l zdot_{l,j}      (u_L = 0)
    zdotbar = g_l s'_l = delta_l
    dW_l    = zbar (x) h_{l-1} + delta_l (x) t_{l-1,j},   db_l = zbar,   u_{l-1} = zbar W_l

and the value rows have ``dW_l = delta_l (x) h_{l-1}``, ``db_l = delta_l``.  The outer products
are written straight into one preallocated (b, 4m, P) buffer: that buffer is the output, and
filling it is most of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass
class _Layer:
    """What the backward pass needs of one hidden layer, for b points.

    ``h_in`` (b, n) and ``t_in`` (b, 3, n): the layer's input and its tangents; ``slope``
    ``s'(z)`` (b, w); ``curvature`` ``s''(z) zdot_j`` (b, 3, w).
    """

    h_in: Tensor
    t_in: Tensor
    slope: Tensor
    curvature: Tensor


def _forward(field, x: Tensor) -> tuple[list[_Layer], Tensor, Tensor]:
    """Run the MLP with tangents; returns the hidden layers, and ``h_L`` (b, w), ``t_L`` (b, 3, w)."""
    activation = field.activation
    h, t = field.features(x), field.feature_tangents(x).permute(1, 0, 2)
    layers = []
    for weight, bias in zip(field.weights[:-1], field.biases[:-1]):
        z = torch.addmm(bias, h, weight.T)
        zdot = t @ weight.T
        h_out = activation.value(z)
        kept = z if activation.needs_z else None
        slope = activation.first(kept, h_out)
        curvature = zdot * activation.second(kept, h_out, slope)[:, None, :]
        layers.append(_Layer(h, t, slope, curvature))
        h, t = h_out, zdot.mul_(slope[:, None, :])
    return layers, h, t


def _offsets(field) -> list[int]:
    """Start of each of ``field.flat_parameters()`` in the flat parameter vector, and P last."""
    starts = [0]
    for parameter in field.flat_parameters():
        starts.append(starts[-1] + parameter.numel())
    return starts


def _output_layer(buffer: Tensor, h: Tensor, t: Tensor, start: int) -> None:
    """Fill the columns of ``W_out, b_out`` (from ``start``): ``N_k`` depends on row k of
    ``W_out`` through ``h_L`` and on ``b_out[k]``; ``dN_k/dx_j`` on row k through ``t_{L,j}``."""
    b, m, width = h.shape[0], buffer.shape[1] // 4, h.shape[1]
    buffer[:, :, start:].zero_()
    weight_end = start + m * width
    value_rows = buffer[:, :m, start:weight_end].view(b, m, m, width)
    torch.diagonal(value_rows, dim1=1, dim2=2).copy_(h[:, :, None])
    grad_rows = buffer[:, m:, start:weight_end].view(b, m, 3, m, width)
    torch.diagonal(grad_rows, dim1=1, dim2=3).copy_(t[..., None])
    torch.diagonal(buffer[:, :m, weight_end:], dim1=1, dim2=2).fill_(1.0)


def _hidden_layer(buffer: Tensor, layer: _Layer, g: Tensor, u: Tensor | None, start: int,
                  end: int) -> tuple[Tensor, Tensor]:
    """Fill the columns ``start:end`` of a hidden layer's ``W, b``; returns the adjoints of its
    pre-activation: ``delta`` (b, m, w) for the value rows, ``zbar`` (b, m, 3, w) for the others.

    ``g`` (b or 1, m, w) is ``dN_k/dh`` at the layer's output, ``u`` (b, m, 3, w) the gradient
    rows' adjoint of it (None above the last hidden layer, where it is 0).
    """
    b, n = layer.h_in.shape
    m, width = g.shape[1], layer.slope.shape[1]
    delta = g * layer.slope[:, None, :]  # (b, m, w)
    zbar = g[:, :, None, :] * layer.curvature[:, None, :, :]  # (b, m, 3, w)
    if u is not None:
        zbar.addcmul_(u, layer.slope[:, None, None, :])
    weight_end = end - width
    value_rows = buffer[:, :m, start:weight_end].view(b, m, width, n)
    torch.mul(delta[..., None], layer.h_in[:, None, None, :], out=value_rows)
    grad_rows = buffer[:, m:, start:weight_end].view(b, m, 3, width, n)
    torch.mul(zbar[..., None], layer.h_in[:, None, None, None, :], out=grad_rows)
    grad_rows.addcmul_(delta[:, :, None, :, None], layer.t_in[:, None, :, None, :])
    buffer[:, :m, weight_end:end] = delta
    buffer[:, m:, weight_end:end] = zbar.view(b, 3 * m, width)
    return delta, zbar


def parameter_jacobian_rows(field, x: Tensor, out: Tensor | None = None) -> Tensor:
    """All per-point parameter Jacobians in one (b, 4m, P) tensor, at points ``x`` (b, 3).

    Row ``k`` (< m) is ``dN_k/dtheta``; row ``m + 3k + j`` is ``d(dN_k/dx_j)/dtheta``.  Columns
    follow ``field.flat_parameters()``, each flattened row-major.  The MLP is unscaled (no
    ``output_scale``).  Computed without autograd, in the dtype and on the device of ``x``.
    ``out``, a contiguous (b, 4m, P) tensor of that dtype, is filled and returned instead of a
    new one: an optimiser that calls this every step with the same b saves the allocation,
    whose first touch of fresh memory costs about as much as the computation on a CPU.
    """
    with torch.no_grad():
        layers, h, t = _forward(field, x)
        weights = list(field.weights)
        starts = _offsets(field)
        m = weights[-1].shape[0]
        shape = (x.shape[0], 4 * m, starts[-1])
        buffer = torch.empty(shape, dtype=h.dtype, device=h.device) if out is None else out
        if buffer.shape != shape or buffer.dtype != h.dtype or not buffer.is_contiguous():
            raise ValueError(f"out must be a contiguous {h.dtype} tensor of shape {shape}, "
                             f"not {buffer.dtype} {tuple(buffer.shape)}")
        _output_layer(buffer, h, t, starts[-3])
        g, u = weights[-1][None], None  # dN_k/dh_L = W_out[k]; the gradient rows' u_L = 0
        for index in range(len(layers) - 1, -1, -1):
            delta, zbar = _hidden_layer(buffer, layers[index], g, u, starts[2 * index], starts[2 * index + 2])
            if index:
                g, u = delta @ weights[index], zbar @ weights[index]
    return buffer


def parameter_jacobians(field, x: Tensor, out: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``jac_value`` (b, m, P) = ``dN_k/dtheta`` and ``jac_grad`` (b, m, 3, P) =
    ``d(dN_k/dx_j)/dtheta`` at points ``x`` (b, 3), of the unscaled MLP.

    Both are views of the one (b, 4m, P) buffer of :func:`parameter_jacobian_rows` (``out``
    as there).
    """
    rows = parameter_jacobian_rows(field, x, out)
    b, m, parameters = rows.shape[0], rows.shape[1] // 4, rows.shape[2]
    return rows[:, :m], rows[:, m:].view(b, m, 3, parameters)


def parameter_jacobian_bytes(points: int, outputs: int, parameters: int,
                             dtype: torch.dtype = torch.float64) -> int:
    """Bytes of the tensors :func:`parameter_jacobians` returns: ``4 m P`` numbers per point."""
    return points * 4 * outputs * parameters * torch.finfo(dtype).bits // 8
