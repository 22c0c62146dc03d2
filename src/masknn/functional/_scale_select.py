"""``select(t * scale, valid)``: the normalization step of the averaging ops (pooling, interpolation).

``t`` is a window sum or an interpolated numerator, ``scale`` the reciprocal of the
window's valid count or weight (broadcast, e.g. ``(N, 1, ...)``), ``valid`` where that
count is positive. The result is *selected*, never multiplied by the mask: the
gradient at an invalid output is replaced by exactly 0 before it is multiplied by
anything, so a NaN or Inf cotangent there reaches no input (the interpolation and
pooling backwards multiply every output gradient by each input's weight, 0 included).

``t`` is exactly 0 wherever ``valid`` is False (it is a weighted sum of selected
zeros there), so on the eager fast path the forward only scales ``t`` in place (a fresh
output buffer is the dominant cost of these ops on a CPU): the select matters for the
gradient, and the backward selects the incoming gradient into one new buffer and
scales it there. Elsewhere it is the plain ``select(t * scale, valid)``,
differentiable any number of times.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from masknn.functional._select import fast_path, select, select_into

__all__ = ["scale_select"]


class _ScaleSelect(torch.autograd.Function):
    """In place ``t *= scale`` (``t`` is 0 where invalid); backward ``select(grad, valid) * scale``."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, scale: Tensor, valid: Tensor) -> Tensor:
        ctx.save_for_backward(scale, valid)
        ctx.mark_dirty(t)
        return t.mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        scale, valid = ctx.saved_tensors
        if torch.is_grad_enabled() or not fast_path(grad):
            return select(grad, valid) * scale, None, None
        return select_into(grad, valid, out=torch.empty_like(grad)).mul_(scale), None, None


def scale_select(t: Tensor, scale: Tensor, valid: Tensor) -> Tensor:
    """``select(t * scale, valid)``; ``t`` must be a fresh intermediate (it may be overwritten).

    ``t`` must be exactly 0 where ``valid`` is False and finite elsewhere; ``scale`` must
    not require a gradient (it comes from the mask) and must broadcast to ``t`` without
    enlarging it; ``valid`` is a bool mask broadcasting to ``t``.
    """
    if (
        not scale.requires_grad
        and t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        and scale.dtype == t.dtype
        and torch.broadcast_shapes(t.shape, scale.shape, valid.shape) == t.shape
        and fast_path(t, scale, valid)
    ):
        out: Tensor = _ScaleSelect.apply(t, scale, valid)
        return out
    return select(t * scale, valid)
