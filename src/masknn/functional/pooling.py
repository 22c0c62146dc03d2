"""Pooling over valid positions: max, average, adaptive average/max, global average/max.

Output valid where the window holds at least one valid input (DESIGN §4); padding
counts as masked. Empty windows give exactly 0. For a channel-shared mask
``(N, 1, ...)`` the output mask stays ``(N, 1, ...)`` (pooled once, not per channel).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn.functional._autocast import twin_dtype
from masknn.functional._layout import follow_layout
from masknn.functional._scale_select import scale_select
from masknn.functional._select import fast_path, mask_bits
from masknn.functional._spatial import IntOrSeq, acc_dtype, is_shared, ntuple, select, shared
from masknn.functional._spatial import prepare as _prepare_spatial

__all__ = [
    "masked_adaptive_avg_pool1d",
    "masked_adaptive_avg_pool2d",
    "masked_adaptive_avg_pool3d",
    "masked_adaptive_max_pool1d",
    "masked_adaptive_max_pool2d",
    "masked_adaptive_max_pool3d",
    "masked_avg_pool1d",
    "masked_avg_pool2d",
    "masked_avg_pool3d",
    "masked_global_avg_pool",
    "masked_global_max_pool",
    "masked_max_pool1d",
    "masked_max_pool2d",
    "masked_max_pool3d",
]

_MAX: dict[int, Callable[..., Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AMAX: dict[int, Callable[..., Tensor]] = {
    1: F.adaptive_max_pool1d,
    2: F.adaptive_max_pool2d,
    3: F.adaptive_max_pool3d,
}
_AAVG: dict[int, Callable[..., Tensor]] = {
    1: F.adaptive_avg_pool1d,
    2: F.adaptive_avg_pool2d,
    3: F.adaptive_avg_pool3d,
}
_AVG: dict[int, Callable[..., Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _pool_mask(m: Tensor) -> tuple[Tensor, bool]:
    """The mask to pool (one channel when shared) and whether it is shared."""
    if is_shared(m):
        return shared(m), True
    return m, False


def prepare(op: str, x: object, mask: object, spatial: int | None) -> tuple[Tensor, Tensor]:
    """Checked data and bool mask (see ``_spatial.prepare``), the mask in the data's layout."""
    x, m = _prepare_spatial(op, x, mask, spatial)
    return x, follow_layout(m, x)


class _FillNegInf(torch.autograd.Function):
    """``torch.where(m, x, -inf)`` bit by bit (eager CPU); its backward is ``select`` of the gradient.

    ``(x_bits & valid_bits) | fill_bits`` with ``fill_bits`` the bits of -inf where masked:
    two passes over ``x`` where ``torch.where`` with a broadcast mask costs about three
    times as much on this CPU. Differentiable any number of times (the backward is the
    differentiable select).
    """

    @staticmethod
    def forward(x: Tensor, m: Tensor) -> Tensor:
        bits = mask_bits(m, x.dtype)
        itype = bits.dtype
        ninf = torch.full((), float("-inf"), dtype=x.dtype, device=x.device).view(itype)
        fill = torch.bitwise_and(torch.bitwise_not(bits), ninf)
        out = torch.empty_like(x)
        torch.bitwise_and(x.resolve_neg().view(itype), bits, out=out.view(itype))
        out.view(itype).bitwise_or_(fill)
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (m,) = ctx.saved_tensors
        return select(grad, m), None


def _fill_neg_inf(x: Tensor, m: Tensor) -> Tensor:
    """``torch.where(m, x, -inf)``: bitwise on the eager fast path, a plain ``where`` elsewhere."""
    if (
        is_shared(m)
        and x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        and (fast_path(x, m))
    ):
        out: Tensor = _FillNegInf.apply(x, shared(m))
        return out
    return torch.where(m, x, torch.full((), float("-inf"), dtype=x.dtype, device=x.device))


def _max_pool(
    op: str,
    nd: int,
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None,
    padding: IntOrSeq,
    dilation: IntOrSeq,
    ceil_mode: bool,
) -> Masked:
    x, m = prepare(op, x, mask, nd)
    k = ntuple(op, "kernel_size", kernel_size, nd)
    s = (
        k
        if stride is None or (not isinstance(stride, int) and len(stride) == 0)
        else ntuple(op, "stride", stride, nd)
    )
    p = ntuple(op, "padding", padding, nd)
    d = ntuple(op, "dilation", dilation, nd)
    pool = _MAX[nd]
    out = pool(_fill_neg_inf(x, m), k, s, p, d, ceil_mode)
    pm, _ = _pool_mask(m)
    valid = pool(pm.to(x.dtype), k, s, p, d, ceil_mode) > 0
    # Empty windows hold -inf: selected to 0 (and their incoming gradient with them).
    return Masked(select(out, valid), valid)


def masked_max_pool1d(
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> Masked:
    """Max over the valid inputs of each window of ``x`` ``(N, C, L)``; see
    [`masked_max_pool2d`][masknn.functional.masked_max_pool2d].

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[5.0, 1.0, float("nan"), float("nan")]]])
        >>> out = masked_max_pool1d(x, ~x.isnan(), 2)
        >>> out.data, out.mask
        (tensor([[[5., 0.]]]), tensor([[[ True, False]]]))
    """
    return _max_pool("masked_max_pool1d", 1, x, mask, kernel_size, stride, padding, dilation, ceil_mode)


def masked_max_pool2d(
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> Masked:
    """Max over the valid inputs of each window (arguments as ``torch.nn.functional.max_pool2d``).

    Valid where the window holds a valid input; empty windows give exactly 0.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 9.0], [3.0, 4.0]]]])
        >>> m = torch.tensor([[[[True, False], [True, True]]]])
        >>> masked_max_pool2d(x, m, 2).data
        tensor([[[[4.]]]])
    """
    return _max_pool("masked_max_pool2d", 2, x, mask, kernel_size, stride, padding, dilation, ceil_mode)


def masked_max_pool3d(
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> Masked:
    """Max over the valid inputs of each window of ``x`` ``(N, C, D, H, W)``; see
    [`masked_max_pool2d`][masknn.functional.masked_max_pool2d].

    Examples:
        >>> import torch
        >>> masked_max_pool3d(torch.ones(1, 1, 2, 2, 2), torch.ones(1, 1, 2, 2, 2), 2).data.shape
        torch.Size([1, 1, 1, 1, 1])
    """
    return _max_pool("masked_max_pool3d", 3, x, mask, kernel_size, stride, padding, dilation, ceil_mode)


def _avg_pool(
    op: str,
    nd: int,
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None,
    padding: IntOrSeq,
    ceil_mode: bool,
) -> Masked:
    x, m = prepare(op, x, mask, nd)
    k = ntuple(op, "kernel_size", kernel_size, nd)
    s = (
        k
        if stride is None or (not isinstance(stride, int) and len(stride) == 0)
        else ntuple(op, "stride", stride, nd)
    )
    p = ntuple(op, "padding", padding, nd)
    acc = acc_dtype(x)
    # Window means in the accumulation dtype (a float16 sum overflows, e.g. 1024 values of
    # 1000). The data and the mask are pooled with the same divisor (count_include_pad):
    # it cancels in their ratio, the mean over the valid inputs. (divisor_override=1 would
    # give the sums directly, but ONNX export silently drops it: wrong results in onnxruntime.)
    pm, _ = _pool_mask(m)
    pool = _AVG[nd]
    total = pool(select(x, m).to(acc), k, s, p, ceil_mode, True)
    frac = pool(pm.to(acc), k, s, p, ceil_mode, True)
    valid = frac > 0
    # Selected, never multiplied by the mask: a NaN/Inf gradient at an empty window stays there.
    out = scale_select(total, 1.0 / torch.where(valid, frac, torch.ones_like(frac)), valid)
    return Masked(out.to(twin_dtype(x, lambda t: pool(t, 1), (1, 1) + (1,) * nd)), valid)


def masked_avg_pool1d(
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0,
    ceil_mode: bool = False,
) -> Masked:
    """Mean over the valid inputs of each window of ``x`` ``(N, C, L)``; see
    [`masked_avg_pool2d`][masknn.functional.masked_avg_pool2d].

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[2.0, float("nan"), 3.0, 5.0]]])
        >>> masked_avg_pool1d(x, ~x.isnan(), 2).data
        tensor([[[2., 4.]]])
    """
    return _avg_pool("masked_avg_pool1d", 1, x, mask, kernel_size, stride, padding, ceil_mode)


def masked_avg_pool2d(
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0,
    ceil_mode: bool = False,
) -> Masked:
    """Mean over the valid inputs of each window (arguments as ``torch.nn.functional.avg_pool2d``).

    Padding counts as masked (so ``count_include_pad`` has no meaning here). Valid where
    the window holds a valid input; empty windows give exactly 0.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 9.0], [3.0, 5.0]]]])
        >>> m = torch.tensor([[[[True, False], [True, True]]]])
        >>> masked_avg_pool2d(x, m, 2).data
        tensor([[[[3.]]]])
    """
    return _avg_pool("masked_avg_pool2d", 2, x, mask, kernel_size, stride, padding, ceil_mode)


def masked_avg_pool3d(
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0,
    ceil_mode: bool = False,
) -> Masked:
    """Mean over the valid inputs of each window of ``x`` ``(N, C, D, H, W)``; see
    [`masked_avg_pool2d`][masknn.functional.masked_avg_pool2d].

    Examples:
        >>> import torch
        >>> masked_avg_pool3d(torch.ones(1, 1, 2, 2, 2), torch.ones(1, 1, 2, 2, 2), 2).data.flatten()
        tensor([1.])
    """
    return _avg_pool("masked_avg_pool3d", 3, x, mask, kernel_size, stride, padding, ceil_mode)


def _adaptive_avg(op: str, nd: int, x: Tensor, mask: Tensor, output_size: IntOrSeq | None) -> Masked:
    x, m = prepare(op, x, mask, nd)
    size = _out_size(op, nd, x, output_size)
    pool = _AAVG[nd]
    pm, _ = _pool_mask(m)
    # Both pools divide by the same window size, so their ratio is the mean over valid inputs.
    # In the accumulation dtype: 1 / frac reaches the window size, which overflows float16
    # beyond 65504 (one valid pixel in a 512 x 512 window).
    acc = acc_dtype(x)
    total = pool(select(x, m).to(acc), size)
    frac = pool(pm.to(acc), size)
    valid = frac > 0
    out = scale_select(total, 1.0 / torch.where(valid, frac, torch.ones_like(frac)), valid)
    return Masked(out.to(twin_dtype(x, lambda t: pool(t, 1), (1, 1) + (1,) * nd)), valid)


def _out_size(op: str, nd: int, x: Tensor, output_size: IntOrSeq | None) -> tuple[Any, ...]:
    if output_size is None:
        raise ValueError(f"{op}: output_size is required")
    if isinstance(output_size, int):
        return (output_size,) * nd
    sizes = tuple(output_size)
    if len(sizes) != nd:
        raise ValueError(f"{op}: expected output_size as an int or {nd} sizes, got {sizes}")
    # None keeps the input size, as in torch (a symbolic size stays symbolic under compile).
    return tuple(x.shape[2 + i] if s is None else int(s) for i, s in enumerate(sizes))


def _adaptive_max(op: str, nd: int, x: Tensor, mask: Tensor, output_size: IntOrSeq | None) -> Masked:
    x, m = prepare(op, x, mask, nd)
    size = _out_size(op, nd, x, output_size)
    pool = _AMAX[nd]
    pm, _ = _pool_mask(m)
    out = pool(_fill_neg_inf(x, m), size)
    valid = pool(pm.to(x.dtype), size) > 0
    return Masked(select(out, valid), valid)


def masked_adaptive_avg_pool1d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive mean over valid inputs of ``x`` ``(N, C, L)``; see
    [`masked_adaptive_avg_pool2d`][masknn.functional.masked_adaptive_avg_pool2d].

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0, 5.0]]])
        >>> masked_adaptive_avg_pool1d(x, ~x.isnan(), 1).data
        tensor([[[3.]]])
    """
    return _adaptive_avg("masked_adaptive_avg_pool1d", 1, x, mask, output_size)


def masked_adaptive_avg_pool2d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive average pooling over valid inputs (as ``torch.nn.functional.adaptive_avg_pool2d``).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 9.0], [3.0, 5.0]]]])
        >>> m = torch.tensor([[[[True, False], [True, True]]]])
        >>> masked_adaptive_avg_pool2d(x, m, 1).data
        tensor([[[[3.]]]])
    """
    return _adaptive_avg("masked_adaptive_avg_pool2d", 2, x, mask, output_size)


def masked_adaptive_avg_pool3d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive mean over valid inputs of ``x`` ``(N, C, D, H, W)``; see
    [`masked_adaptive_avg_pool2d`][masknn.functional.masked_adaptive_avg_pool2d].

    Examples:
        >>> import torch
        >>> masked_adaptive_avg_pool3d(torch.ones(1, 2, 4, 4, 4), torch.ones(1, 1, 4, 4, 4), 2).data.shape
        torch.Size([1, 2, 2, 2, 2])
    """
    return _adaptive_avg("masked_adaptive_avg_pool3d", 3, x, mask, output_size)


def masked_adaptive_max_pool1d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive max over valid inputs of ``x`` ``(N, C, L)``; see
    [`masked_adaptive_max_pool2d`][masknn.functional.masked_adaptive_max_pool2d].

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0, 5.0]]])
        >>> masked_adaptive_max_pool1d(x, ~x.isnan(), 2).data
        tensor([[[1., 5.]]])
    """
    return _adaptive_max("masked_adaptive_max_pool1d", 1, x, mask, output_size)


def masked_adaptive_max_pool2d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive max pooling over valid inputs (as ``torch.nn.functional.adaptive_max_pool2d``).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 9.0], [3.0, 5.0]]]])
        >>> m = torch.tensor([[[[True, False], [True, True]]]])
        >>> masked_adaptive_max_pool2d(x, m, 1).data
        tensor([[[[5.]]]])
    """
    return _adaptive_max("masked_adaptive_max_pool2d", 2, x, mask, output_size)


def masked_adaptive_max_pool3d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive max over valid inputs of ``x`` ``(N, C, D, H, W)``; see
    [`masked_adaptive_max_pool2d`][masknn.functional.masked_adaptive_max_pool2d].

    Examples:
        >>> import torch
        >>> masked_adaptive_max_pool3d(torch.ones(1, 2, 4, 4, 4), torch.ones(1, 1, 4, 4, 4), 1).data.shape
        torch.Size([1, 2, 1, 1, 1])
    """
    return _adaptive_max("masked_adaptive_max_pool3d", 3, x, mask, output_size)


def _global(op: str, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    x, m = prepare(op, x, mask, None)
    if x.dim() < 2:
        raise ValueError(f"{op}: expected data (N, C, ...), got {x.dim()} dimensions")
    return x, m, tuple(range(2, x.dim()))


def masked_global_avg_pool(x: Tensor, mask: Tensor) -> Masked:
    """Mean over every dimension after the channel dimension: ``(N, C, ...) -> Masked (N, C)``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0]]])
        >>> out = masked_global_avg_pool(x, ~x.isnan())
        >>> out.data, out.mask
        (tensor([[2.]]), tensor([[True]]))
    """
    x, m, dims = _global("masked_global_avg_pool", x, mask)
    if not dims:
        return Masked(select(x, m), m.expand(x.shape))
    acc = acc_dtype(x)
    total = select(x, m).to(acc).sum(dim=dims)
    pm, _ = _pool_mask(m)  # counts over the (N, 1 or C, ...) mask, never expanded over channels
    cnt = pm.sum(dim=dims, dtype=acc)
    valid = cnt > 0
    out = select(total / cnt.clamp_min(1), valid).to(x.dtype)
    return Masked(out, valid.expand(out.shape))


def masked_global_max_pool(x: Tensor, mask: Tensor) -> Masked:
    """Max over every dimension after the channel dimension: ``(N, C, ...) -> Masked (N, C)``.

    As ``amax``, the gradient is shared evenly between tied maxima.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0]]])
        >>> masked_global_max_pool(x, ~x.isnan()).data
        tensor([[3.]])
    """
    x, m, dims = _global("masked_global_max_pool", x, mask)
    if not dims:
        return Masked(select(x, m), m.expand(x.shape))
    out = _fill_neg_inf(x, m).amax(dim=dims)
    pm, _ = _pool_mask(m)
    valid = pm.any(dim=dims)
    return Masked(select(out, valid), valid.expand(out.shape))
