"""Pooling over valid positions: max, average, adaptive average/max, global average/max.

Output valid where the window holds at least one valid input (DESIGN §4); padding
counts as masked. Empty windows give exactly 0. For a channel-shared mask
``(N, 1, ...)`` the output mask stays ``(N, 1, ...)`` (pooled once, not per channel).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import shape_str
from masknn.functional._autocast import twin_dtype
from masknn.functional._layout import follow_layout
from masknn.functional._scale_select import scale_select
from masknn.functional._select import fast_path, fill_value, mask_bits
from masknn.functional._spatial import IntOrSeq, acc_dtype, is_shared, select, shared
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
    return torch.where(m, x, fill_value(m, x, float("-inf")))


# --------------------------------------------------------------------------- arguments
def _ints(op: str, name: str, value: object, nd: int) -> tuple[int, ...]:
    """``value`` as ``nd`` ints: an int (repeated), or one (repeated) or ``nd`` of them."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * nd
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items) and len(items) in (1, nd):
            return items * nd if len(items) == 1 else items
    raise TypeError(f"{op}: expected {name} as an int or {nd} ints, got {value!r}")


def _window_args(
    op: str,
    nd: int,
    kernel_size: object,
    stride: object,
    padding: object,
    dilation: object,
    ceil_mode: object,
    kind: str,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Checked ``(kernel, stride, padding, dilation)`` of a ``kind`` ("max" or "avg") pooling.

    The rules are torch's (which raises a ``RuntimeError`` without the layer's name):
    kernel, stride and dilation at least 1, padding at least 0 and at most half the
    effective kernel ``dilation·(kernel - 1) + 1``. ``stride`` ``None`` (or empty) is the
    kernel size.
    """
    k = _ints(op, "kernel_size", kernel_size, nd)
    empty = stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
    s = k if empty else _ints(op, "stride", stride, nd)
    p = _ints(op, "padding", padding, nd)
    d = _ints(op, "dilation", dilation, nd)
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"{op}: expected ceil_mode as a bool, got {ceil_mode!r}")
    for name, values in (("kernel_size", k), ("stride", s), ("dilation", d)):
        if any(v < 1 for v in values):
            said = "stride should not be zero" if name == "stride" else f"{name} should be greater than zero"
            raise ValueError(
                f"{op}: expected {name} >= 1 in every dimension, got {values} (torch raises "
                f"RuntimeError: {said})"
            )
    if any(v < 0 for v in p):
        raise ValueError(
            f"{op}: expected padding >= 0, got {p} (torch raises RuntimeError: pad must be non-negative)"
        )
    half = [((kk - 1) * dd + 1) // 2 for kk, dd in zip(k, d)] if kind == "max" else [kk // 2 for kk in k]
    if any(pp > h for pp, h in zip(p, half)):
        what = (
            f"effective kernel size (kernel_size={k}, dilation={d})" if kind == "max" else f"kernel_size {k}"
        )
        raise ValueError(
            f"{op}: padding {p} is more than half of the {what}: expected padding <= {tuple(half)} "
            "(torch raises RuntimeError: pad should be at most half of kernel size)"
        )
    return k, s, p, d


_cached_window_args = functools.lru_cache(maxsize=256)(_window_args)


def window_args(
    op: str,
    nd: int,
    kernel_size: object,
    stride: object,
    padding: object,
    dilation: object,
    ceil_mode: object,
    kind: str,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``_window_args``, memoized in eager mode (the checks then cost one dict lookup)."""
    args = (op, nd, kernel_size, stride, padding, dilation, ceil_mode, kind)
    if not torch.compiler.is_compiling():
        try:
            return _cached_window_args(*args)
        except TypeError:  # lists: unhashable (a genuine TypeError is raised again below)
            pass
    return _window_args(*args)


def _check_spatial(op: str, nd: int, x: Tensor) -> None:
    """Pooling needs non-empty channel and spatial dimensions (only the batch may be 0), as torch."""
    if any(isinstance(v, int) and v == 0 for v in x.shape[1:]):
        raise ValueError(
            f"{op}: expected non-empty channel and spatial dimensions (only the batch may be empty), "
            f"got data shape {shape_str(x.shape)} (torch raises RuntimeError for it)"
        )


def _check_window_output(
    op: str,
    x: Tensor,
    k: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    d: tuple[int, ...],
    ceil_mode: bool,
) -> None:
    """The output of a window over the padded input has at least one position, as torch requires.

    Only with concrete sizes: under dynamic shapes torch's own check applies.
    """
    spatial = tuple(x.shape[2:])
    if not all(isinstance(v, int) for v in spatial):
        return
    out = []
    for n, kk, ss, pp, dd in zip(spatial, k, s, p, d):
        o = (n + 2 * pp - dd * (kk - 1) - 1 + (ss - 1 if ceil_mode else 0)) // ss + 1
        if ceil_mode and (o - 1) * ss >= n + pp:
            o -= 1
        out.append(o)
    if any(o < 1 for o in out):
        raise ValueError(
            f"{op}: the window (kernel_size={k}, stride={s}, padding={p}, dilation={d}) is larger than "
            f"the padded input: data shape {shape_str(x.shape)} gives an output of spatial size "
            f"{tuple(out)} (torch raises RuntimeError: Output size is too small)"
        )


def max_pool(
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
    """The masked max pooling of ``masked_max_pool2d`` with errors naming ``op``."""
    x, m = prepare(op, x, mask, nd)
    k, s, p, d = window_args(op, nd, kernel_size, stride, padding, dilation, ceil_mode, "max")
    _check_spatial(op, nd, x)
    _check_window_output(op, x, k, s, p, d, ceil_mode)
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
    return max_pool("masked_max_pool1d", 1, x, mask, kernel_size, stride, padding, dilation, ceil_mode)


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
    return max_pool("masked_max_pool2d", 2, x, mask, kernel_size, stride, padding, dilation, ceil_mode)


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
    return max_pool("masked_max_pool3d", 3, x, mask, kernel_size, stride, padding, dilation, ceil_mode)


def _inverse(frac: Tensor) -> Tensor:
    """``1 / frac`` where the window holds a valid input (``frac > 0``), finite elsewhere.

    An empty window's value is never used (its sum is 0 and its output and gradient are
    selected); clamping to the smallest normal number keeps it finite without a ``where``
    (see ``_select.fill_value`` for what a shared constant costs under torch.compile). A
    window's valid fraction is at least ``1 / window size``, far above that.
    """
    return 1.0 / frac.clamp_min(torch.finfo(frac.dtype).tiny)


def avg_pool(
    op: str,
    nd: int,
    x: Tensor,
    mask: Tensor,
    kernel_size: IntOrSeq,
    stride: IntOrSeq | None,
    padding: IntOrSeq,
    ceil_mode: bool,
) -> Masked:
    """The masked average pooling of ``masked_avg_pool2d`` with errors naming ``op``."""
    x, m = prepare(op, x, mask, nd)
    k, s, p, _ = window_args(op, nd, kernel_size, stride, padding, 1, ceil_mode, "avg")
    _check_spatial(op, nd, x)
    _check_window_output(op, x, k, s, p, (1,) * nd, ceil_mode)
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
    out = scale_select(total, _inverse(frac), valid)
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
    return avg_pool("masked_avg_pool1d", 1, x, mask, kernel_size, stride, padding, ceil_mode)


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
    return avg_pool("masked_avg_pool2d", 2, x, mask, kernel_size, stride, padding, ceil_mode)


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
    return avg_pool("masked_avg_pool3d", 3, x, mask, kernel_size, stride, padding, ceil_mode)


def adaptive_avg(op: str, nd: int, x: Tensor, mask: Tensor, output_size: IntOrSeq | None) -> Masked:
    """The masked adaptive average pooling of ``masked_adaptive_avg_pool2d``, errors naming ``op``."""
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
    out = scale_select(total, _inverse(frac), valid)
    return Masked(out.to(twin_dtype(x, lambda t: pool(t, 1), (1, 1) + (1,) * nd)), valid)


def check_output_size(op: str, nd: int, output_size: object) -> tuple[int | None, ...]:
    """``output_size`` of an adaptive pooling as ``nd`` entries, each an int >= 0 or ``None``
    (the input's size), as torch takes it; else a ``ValueError``/``TypeError`` naming ``op``."""
    if output_size is None:
        raise ValueError(f"{op}: output_size is required")
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        sizes: tuple[object, ...] = (output_size,) * nd
    elif isinstance(output_size, Sequence) and not isinstance(output_size, str):
        sizes = tuple(output_size)
        if len(sizes) != nd:
            raise ValueError(f"{op}: expected output_size as an int or {nd} sizes, got {sizes}")
    else:
        raise TypeError(f"{op}: expected output_size as an int or {nd} sizes, got {output_size!r}")
    for v in sizes:
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise TypeError(f"{op}: expected output_size entries as ints or None, got {sizes}")
        if v is not None and v < 0:
            raise ValueError(
                f"{op}: expected output_size >= 0 (or None: the input's size), got {sizes} (torch raises "
                "RuntimeError: elements of output_size must be greater than or equal to 0)"
            )
    return sizes  # type: ignore[return-value]


def _out_size(op: str, nd: int, x: Tensor, output_size: IntOrSeq | None) -> tuple[Any, ...]:
    sizes = check_output_size(op, nd, output_size)
    _check_spatial(op, nd, x)
    # None keeps the input size, as in torch (a symbolic size stays symbolic under compile).
    return tuple(x.shape[2 + i] if v is None else v for i, v in enumerate(sizes))


def adaptive_max(op: str, nd: int, x: Tensor, mask: Tensor, output_size: IntOrSeq | None) -> Masked:
    """The masked adaptive max pooling of ``masked_adaptive_max_pool2d``, errors naming ``op``."""
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
    return adaptive_avg("masked_adaptive_avg_pool1d", 1, x, mask, output_size)


def masked_adaptive_avg_pool2d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive average pooling over valid inputs (as ``torch.nn.functional.adaptive_avg_pool2d``).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 9.0], [3.0, 5.0]]]])
        >>> m = torch.tensor([[[[True, False], [True, True]]]])
        >>> masked_adaptive_avg_pool2d(x, m, 1).data
        tensor([[[[3.]]]])
    """
    return adaptive_avg("masked_adaptive_avg_pool2d", 2, x, mask, output_size)


def masked_adaptive_avg_pool3d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive mean over valid inputs of ``x`` ``(N, C, D, H, W)``; see
    [`masked_adaptive_avg_pool2d`][masknn.functional.masked_adaptive_avg_pool2d].

    Examples:
        >>> import torch
        >>> masked_adaptive_avg_pool3d(torch.ones(1, 2, 4, 4, 4), torch.ones(1, 1, 4, 4, 4), 2).data.shape
        torch.Size([1, 2, 2, 2, 2])
    """
    return adaptive_avg("masked_adaptive_avg_pool3d", 3, x, mask, output_size)


def masked_adaptive_max_pool1d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive max over valid inputs of ``x`` ``(N, C, L)``; see
    [`masked_adaptive_max_pool2d`][masknn.functional.masked_adaptive_max_pool2d].

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0, 5.0]]])
        >>> masked_adaptive_max_pool1d(x, ~x.isnan(), 2).data
        tensor([[[1., 5.]]])
    """
    return adaptive_max("masked_adaptive_max_pool1d", 1, x, mask, output_size)


def masked_adaptive_max_pool2d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive max pooling over valid inputs (as ``torch.nn.functional.adaptive_max_pool2d``).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 9.0], [3.0, 5.0]]]])
        >>> m = torch.tensor([[[[True, False], [True, True]]]])
        >>> masked_adaptive_max_pool2d(x, m, 1).data
        tensor([[[[5.]]]])
    """
    return adaptive_max("masked_adaptive_max_pool2d", 2, x, mask, output_size)


def masked_adaptive_max_pool3d(x: Tensor, mask: Tensor, output_size: IntOrSeq) -> Masked:
    """Adaptive max over valid inputs of ``x`` ``(N, C, D, H, W)``; see
    [`masked_adaptive_max_pool2d`][masknn.functional.masked_adaptive_max_pool2d].

    Examples:
        >>> import torch
        >>> masked_adaptive_max_pool3d(torch.ones(1, 2, 4, 4, 4), torch.ones(1, 1, 4, 4, 4), 1).data.shape
        torch.Size([1, 2, 1, 1, 1])
    """
    return adaptive_max("masked_adaptive_max_pool3d", 3, x, mask, output_size)


def _global(op: str, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    x, m = prepare(op, x, mask, None)
    if x.dim() < 2:
        raise ValueError(f"{op}: expected data (N, C, ...), got shape {shape_str(x.shape)}")
    return x, m, tuple(range(2, x.dim()))


def global_avg_pool(op: str, x: Tensor, mask: Tensor) -> Masked:
    """``masked_global_avg_pool`` with errors naming ``op``."""
    x, m, dims = _global(op, x, mask)
    if not dims:
        return Masked(select(x, m), m.expand(x.shape))
    acc = acc_dtype(x)
    total = select(x, m).to(acc).sum(dim=dims)
    pm, _ = _pool_mask(m)  # counts over the (N, 1 or C, ...) mask, never expanded over channels
    cnt = pm.sum(dim=dims, dtype=acc)
    valid = cnt > 0
    out = select(total / cnt.clamp_min(1), valid).to(x.dtype)
    return Masked(out, valid.expand(out.shape))


def masked_global_avg_pool(x: Tensor, mask: Tensor) -> Masked:
    """Mean over every dimension after the channel dimension: ``(N, C, ...) -> Masked (N, C)``.

    An empty spatial dimension has no valid element: zeros with a False mask.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0]]])
        >>> out = masked_global_avg_pool(x, ~x.isnan())
        >>> out.data, out.mask
        (tensor([[2.]]), tensor([[True]]))
    """
    return global_avg_pool("masked_global_avg_pool", x, mask)


def global_max_pool(op: str, x: Tensor, mask: Tensor) -> Masked:
    """``masked_global_max_pool`` with errors naming ``op``."""
    x, m, dims = _global(op, x, mask)
    if not dims:
        return Masked(select(x, m), m.expand(x.shape))
    pm, _ = _pool_mask(m)
    valid = pm.any(dim=dims)
    if any(isinstance(x.shape[d], int) and x.shape[d] == 0 for d in dims):
        # amax refuses an empty reduction; nothing is valid there (as the average pool).
        out = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device)
        return Masked(out, valid.expand(out.shape))
    out = _fill_neg_inf(x, m).amax(dim=dims)
    return Masked(select(out, valid), valid.expand(out.shape))


def masked_global_max_pool(x: Tensor, mask: Tensor) -> Masked:
    """Max over every dimension after the channel dimension: ``(N, C, ...) -> Masked (N, C)``.

    As ``amax``, the gradient is shared evenly between tied maxima. An empty spatial
    dimension has no valid element: zeros with a False mask.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0]]])
        >>> masked_global_max_pool(x, ~x.isnan()).data
        tensor([[3.]])
    """
    return global_max_pool("masked_global_max_pool", x, mask)
