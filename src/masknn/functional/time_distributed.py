"""Time-distributed (per-row) masked linear: only valid rows are computed."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str, to_bool_mask
from masknn.functional._select import differentiable_backward, fast_path, select

__all__ = ["time_distributed_linear"]


def row_mask(op: str, x: Tensor, mask: object) -> Tensor:
    """Validate a row mask for data ``(*, F)``: the mask's last dimension must be 1.

    Returns the mask as bool with the data's number of dimensions (a sequence mask
    ``(N, T)`` for data ``(N, T, F)`` becomes ``(N, T, 1)``).
    """
    x = check_data(op, x)
    if x.dim() < 1:
        raise ValueError(f"{op}: expected data with a feature dimension (*, F), got a scalar")
    m = to_bool_mask(op, x, mask)
    if m.shape[-1] != 1 and x.shape[-1] != 1:
        raise ValueError(
            f"{op}: expected a row mask whose last dimension is 1, e.g. (N, T, 1) or (N, T) for data "
            f"(N, T, F), got mask {shape_str(m.shape)} for data {shape_str(x.shape)}. A per-feature "
            "mask needs masknn.nn.MaskedLinear (zero-fill of masked features, optional partial "
            "rescaling), not a time-distributed layer"
        )
    return m


def time_distributed_linear(x: Tensor, mask: object, weight: Tensor, bias: Tensor | None = None) -> Masked:
    """``F.linear`` on the valid rows only (eager CPU: gather, matmul, scatter).

    ``x`` is ``(*, in_features)`` with any leading shape; ``mask`` is a row mask
    ``(*, 1)`` (``(N, T)`` is accepted for ``(N, T, F)``), True = valid row. The
    masked rows are never read nor multiplied: their output is exactly 0, they
    get no gradient, and the work is proportional to the number of valid rows
    (Keras' ``TimeDistributed(Dense)`` multiplies every row). The output mask is
    the input row mask.

    Under ``torch.compile``, ``torch.export``, ONNX export, ``torch.func`` transforms,
    autocast, off the CPU and for double backward, a static-shape form runs instead:
    every row is multiplied, then masked rows are set to exactly 0 (same values).

    A per-feature mask (last dimension > 1) raises a ``ValueError`` pointing to
    ``masknn.nn.MaskedLinear``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 2.0], [float("nan"), 0.0], [3.0, 4.0]]])
        >>> out = time_distributed_linear(x, torch.tensor([[1, 0, 1]]), torch.eye(2))
        >>> out.data
        tensor([[[1., 2.],
                 [0., 0.],
                 [3., 4.]]])
        >>> out.mask.shape
        torch.Size([1, 3, 1])
    """
    return td_linear("time_distributed_linear", x, mask, weight, bias)


def td_linear(op: str, x: Tensor, mask: object, weight: Tensor, bias: Tensor | None) -> Masked:
    """[`time_distributed_linear`][masknn.functional.time_distributed_linear] with errors naming ``op``."""
    m = row_mask(op, x, mask)
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"{op}: weight {shape_str(weight.shape)} does not fit data {shape_str(x.shape)}: expected "
            f"(out_features, {x.shape[-1]})"
        )
    autocast = torch.is_autocast_enabled(x.device.type)
    if (weight.dtype != x.dtype and not autocast) or weight.device != x.device:
        raise TypeError(
            f"{op}: weight ({weight.dtype} on {weight.device}) and data {shape_str(x.shape)} "
            f"({x.dtype} on {x.device}) must share dtype and device"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(f"{op}: bias {shape_str(bias.shape)} does not fit weight {shape_str(weight.shape)}")
    if fast_path(x, m, weight, bias) and not autocast and x.numel() > 0:
        out: Tensor = _RowLinear.apply(x, m, weight, bias)
    else:
        out = _composite(x, m, weight, bias)
    return Masked(out, m)


def _composite(x: Tensor, m: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Every row, then select (static shapes: compile, export, ONNX, torch.func, double backward).

    The input is selected too, so that a NaN in a masked row reaches neither the output nor,
    through ``W^T`` and ``x^T``, the gradients.
    """
    return select(F.linear(select(x, m), weight, bias), m)


def _valid_rows(x: Tensor, m: Tensor) -> Tensor:
    lead = x.shape[:-1]
    return m[..., 0].expand(lead).reshape(-1).nonzero().squeeze(1)


class _RowLinear(torch.autograd.Function):
    """Eager fast path: ``out[rows] = x[rows] @ W.T + b``, 0 elsewhere; masked rows are never read.

    The work is proportional to the valid rows (a data-dependent gather, so this node only
    runs where ``fast_path`` allows). The fast backward reuses the gathered rows and
    touches only the valid rows of the gradients (a NaN cotangent in a masked row reaches
    nothing); a backward with ``create_graph=True`` (or under a transform) re-runs the
    static-shape composite.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, m: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        idx = _valid_rows(x, m)
        flat = x.reshape(-1, x.shape[-1])
        out_shape = (*x.shape[:-1], weight.shape[0])
        ctx.has_bias = bias is not None
        if idx.numel() == flat.shape[0]:  # every row valid: one plain matmul
            ctx.save_for_backward(x, m, weight, bias, flat, None)
            return F.linear(flat, weight, bias).view(out_shape)
        xs = flat.index_select(0, idx)
        y = F.linear(xs, weight, bias)
        out = y.new_zeros(flat.shape[0], weight.shape[0]).index_copy_(0, idx, y)
        ctx.save_for_backward(x, m, weight, bias, xs, idx)
        return out.view(out_shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, m, weight, bias, xs, idx = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled() or not fast_path(grad):
            gx, _, gw, gb = differentiable_backward(_composite, (x, m, weight, bias), (grad,), needs)
            return gx, None, gw, gb
        g2 = grad.reshape(-1, weight.shape[0])
        gy = g2 if idx is None else g2.index_select(0, idx)
        gx = gw = gb = None
        if needs[0]:
            gxs = gy @ weight
            if idx is not None:
                gxs = gxs.new_zeros(g2.shape[0], weight.shape[1]).index_copy_(0, idx, gxs)
            gx = gxs.view(x.shape)
        if needs[2]:
            gw = gy.t() @ xs
        if ctx.has_bias and needs[3]:
            gb = gy.sum(0)
        return gx, None, gw, gb
