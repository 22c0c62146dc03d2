"""Time-distributed (per-row) masked linear: only valid rows are computed."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str, to_bool_mask

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
    """``F.linear`` on the valid rows only: gather, matmul, scatter.

    ``x`` is ``(*, in_features)`` with any leading shape; ``mask`` is a row mask
    ``(*, 1)`` (``(N, T)`` is accepted for ``(N, T, F)``), True = valid row. The
    masked rows are never read nor multiplied: their output is exactly 0, they
    get no gradient, and the work is proportional to the number of valid rows
    (Keras' ``TimeDistributed(Dense)`` multiplies every row). The output mask is
    the input row mask.

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
    if weight.dtype != x.dtype or weight.device != x.device:
        raise TypeError(
            f"{op}: weight ({weight.dtype} on {weight.device}) and data {shape_str(x.shape)} "
            f"({x.dtype} on {x.device}) must share dtype and device"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(f"{op}: bias {shape_str(bias.shape)} does not fit weight {shape_str(weight.shape)}")
    lead = x.shape[:-1]
    rows = m[..., 0].expand(lead).reshape(-1)
    flat = x.reshape(-1, x.shape[-1])
    idx = rows.nonzero().squeeze(1)
    if idx.numel() == rows.numel():
        out = F.linear(flat, weight, bias)
    else:
        out = _RowLinear.apply(flat, idx, weight, bias)
    return Masked(out.reshape(*lead, weight.shape[0]), m)


class _RowLinear(torch.autograd.Function):
    """``out[idx] = x[idx] @ W.T + b``, 0 elsewhere; rows not in ``idx`` are never read.

    A hand-written backward: the default one of ``index_select`` + ``index_copy``
    adds two full-size zero-filled buffers and an ``index_add``; this one reuses
    the gathered rows and touches only the valid rows of the gradients.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, idx: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        xs = x.index_select(0, idx)
        y = F.linear(xs, weight, bias)
        out = y.new_zeros(x.shape[0], weight.shape[0]).index_copy_(0, idx, y)
        ctx.save_for_backward(xs, idx, weight)
        ctx.rows = x.shape[0]
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        xs, idx, weight = ctx.saved_tensors
        gy = grad.index_select(0, idx)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gxs = gy @ weight.to(gy.dtype)
            gx = gxs.new_zeros(ctx.rows, weight.shape[1]).index_copy_(0, idx, gxs)
        if ctx.needs_input_grad[2]:
            gw = gy.t() @ xs
        if ctx.has_bias and ctx.needs_input_grad[3]:
            gb = gy.sum(0)
        return gx, None, gw, gb
