"""Dense layers on masked features: masked linear (pre-masking, optional partial rescale) and flatten."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, check_dim, shape_str, to_bool_mask
from masknn.functional._select import select
from masknn.functional._spatial import acc_dtype

__all__ = ["masked_flatten", "masked_linear"]

_MODES = ("zero", "partial")


def masked_linear(
    x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None = None, mode: str = "zero"
) -> Masked:
    """A linear layer on the valid input features of ``x`` ``(*, in_features)``.

    ``mode="zero"`` (pre-masking): masked features count as 0, ``y = W·(x⊙m) + b``.
    ``mode="partial"``: the product is rescaled by ``in_features / valid count``, so a
    row with half of its features missing is not pulled toward the bias (the dense
    analogue of a partial convolution).

    The mask is ``(*, in_features)`` or ``(*, 1)`` (whole rows); a sequence mask
    ``(N, T)`` for ``(N, T, F)`` data is taken as ``(N, T, 1)``. The output is valid
    where at least one input feature is; its mask is ``(*, 1)`` and the output is
    exactly 0 elsewhere.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, float("nan")]])
        >>> w = torch.ones(1, 2)
        >>> masked_linear(x, ~x.isnan(), w).data, masked_linear(x, ~x.isnan(), w, mode="partial").data
        (tensor([[1.]]), tensor([[2.]]))
    """
    return linear("masked_linear", x, mask, weight, bias, mode)


def linear(op: str, x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None, mode: str) -> Masked:
    """``masked_linear`` with errors naming ``op``."""
    x = check_data(op, x)
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be one of {_MODES}, got {mode!r}")
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        got = shape_str(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{op}: expected a 2-d weight (out_features, in_features), got {got}")
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != (weight.shape[0],)):
        got = shape_str(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(f"{op}: expected bias of shape ({weight.shape[0]},) (out_features), got {got}")
    if x.dim() < 1 or x.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"{op}: data shape {shape_str(x.shape)} does not end with in_features = {weight.shape[-1]} "
            f"(weight shape {shape_str(weight.shape)})"
        )
    autocast = torch.is_autocast_enabled(x.device.type)
    if (weight.dtype != x.dtype and not autocast) or weight.device != x.device:
        raise TypeError(
            f"{op}: weight ({weight.dtype} on {weight.device}) and data ({x.dtype} on {x.device}) "
            "must share dtype and device"
        )
    m = to_bool_mask(op, x, mask)
    xz = select(x, m)
    if m.shape[-1] == 1:
        valid = m
        cnt = None
    else:
        cnt = m.sum(-1, keepdim=True, dtype=acc_dtype(x))
        valid = cnt > 0
    if mode == "partial" and cnt is not None:
        # The rescale in the accumulation dtype: n / count reaches n_in, which overflows
        # float16 beyond 65504 features (a flattened image with one valid value gave Inf).
        y = F.linear(xz, weight)
        acc = cnt.dtype
        scale = torch.where(
            valid, x.shape[-1] / cnt.clamp_min(1), torch.zeros((), dtype=acc, device=x.device)
        )
        b = bias.to(acc) if bias is not None else None
        out = (torch.addcmul(b, y.to(acc), scale) if b is not None else y.to(acc) * scale).to(y.dtype)
    else:
        out = F.linear(xz, weight, bias)
    out = select(out, valid)
    return Masked(out, valid)


def masked_flatten(x: Tensor, mask: Tensor, start_dim: int = 1, end_dim: int = -1) -> Masked:
    """Flatten ``x`` like ``torch.flatten``; the mask is flattened with it.

    A mask of size 1 over every flattened dimension stays size 1 (still broadcasting);
    otherwise it is expanded over the flattened dimensions first.

    Examples:
        >>> import torch
        >>> out = masked_flatten(torch.ones(2, 3, 4), torch.ones(2, 1, 4, dtype=torch.bool))
        >>> out.data.shape, out.mask.shape
        (torch.Size([2, 12]), torch.Size([2, 12]))
    """
    return flatten("masked_flatten", x, mask, start_dim, end_dim)


def flatten(op: str, x: Tensor, mask: Tensor, start_dim: int, end_dim: int) -> Masked:
    """``masked_flatten`` with errors naming ``op``; a dim out of range raises an ``OutOfRangeError``
    (a ``ValueError`` and an ``IndexError``, what ``torch.flatten`` raises), never wraps around."""
    x = check_data(op, x)
    m = to_bool_mask(op, x, mask, allow_sequence=False)
    s = check_dim(op, "start_dim", start_dim, x.dim())
    e = check_dim(op, "end_dim", end_dim, x.dim())
    if s > e:
        raise ValueError(
            f"{op}: start_dim {start_dim} comes after end_dim {end_dim} for shape {shape_str(x.shape)}"
        )
    data = select(x, m).flatten(s, e)
    if x.dim() == 0:
        return Masked(data, m.reshape(data.shape))
    if any(m.shape[d] != 1 for d in range(s, e + 1)):
        m = m.expand(*m.shape[:s], *x.shape[s : e + 1], *m.shape[e + 1 :])
    return Masked(data, m.flatten(s, e))
