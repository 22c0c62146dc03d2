"""Masked reductions: sum, mean, var/std, max/min, logsumexp, softmax, log-softmax.

Each takes ``(x, mask, dim=None, keepdim=False)`` and returns a
[`Masked`][masknn.Masked] whose mask tells where at least one element was valid
(for var/std: more valid elements than ``correction``). A reduction over no
valid element gives exactly 0 there (never NaN), and masked values (NaN, Inf
included) never reach the result or receive a gradient.

Dimensions and dtypes follow torch: ``dim=None`` and ``dim=()`` reduce over every
dimension; the sum of integer (or bool) data is ``int64`` and exact; the mean of
integer data needs an explicit floating ``dtype`` (as ``torch.mean``); half-precision
sums and means accumulate in float32 and return the input's dtype.

Every op is written with plain differentiable torch ops (``torch.compile`` with
dynamic shapes, ``torch.export``, ONNX, ``torch.func`` and double backward all see
them), except one eager-CPU fast kernel (``masknn.functional._select.fast_path`` decides):
the masked sum (hence the mean). Where the mask is shared along dimensions next to the
reduced ones (an ``(N, 1, H, W)`` mask over ``(2, 3)``, an ``(N, T, 1)`` mask over time),
float32/float64 data is multiplied by the mask as a batched matrix-vector product (one
read of the data, as ``x.sum``); where a masked NaN or Inf, which a product cannot ignore
(``0 * inf = NaN``), makes a chunk's result non-finite, the same product runs on the
selected chunk (so a valid result never depends on masked values, bit for bit). Elsewhere
it selects and sums in cache-sized chunks. The product adds in another order than
``x.sum``: its results equal the select's within float rounding, not bit for bit.
The mask is never expanded to the data's size: counts are taken on the mask as given
and scaled by the sizes it broadcasts over.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, check_dim, to_bool_mask
from masknn.functional._select import differentiable_backward, fast_path, select, select_into

__all__ = [
    "masked_log_softmax",
    "masked_logsumexp",
    "masked_max",
    "masked_mean",
    "masked_min",
    "masked_softmax",
    "masked_std",
    "masked_sum",
    "masked_var",
]

Dims = int | Sequence[int] | None

_HALF = (torch.float16, torch.bfloat16)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: Dtypes of the product path (half precision keeps the select: its sum accumulates in float32).
_PRODUCT = (torch.float32, torch.float64)
#: Elements per chunk of the fast masked sum (4 MB of float32): below that one chunk costs fewer
#: ops; above, the selected copy of a chunk stays in the last-level cache.
_CHUNK = 1 << 20


def _prepare(op: str, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The data and its bool mask as given (broadcastable, never expanded)."""
    x = check_data(op, x)
    return x, to_bool_mask(op, x, mask)


def _floating(op: str, x: Tensor) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{op}: expected floating point data, got dtype {x.dtype}")


def _dims(op: str, x: Tensor, dim: Dims) -> tuple[int, ...]:
    """Normalized reduction dims; ``None`` and ``()`` mean every dimension (as torch)."""
    nd = x.dim()
    if isinstance(dim, bool) or not (dim is None or isinstance(dim, (int, Sequence))):
        raise TypeError(f"{op}: expected dim as int or a sequence of ints, got {dim!r}")
    dims = () if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)
    out = [check_dim(op, "dim", d, nd) for d in dims]
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dims {dims} repeat a dimension")
    if nd == 0:
        return ()
    return tuple(sorted(out)) if out else tuple(range(nd))


def _count(x: Tensor, m: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Valid elements per output position (int64, keepdim, the mask's broadcast shape).

    Taken on the mask as given, times the sizes of the reduced dimensions it broadcasts
    over (an ``(N, 1, H, W)`` mask counts ``C`` times per position): no expansion.
    """
    if not dims:
        return m.to(torch.int64)
    count = m.sum(dims, keepdim=True, dtype=torch.int64)
    for d in dims:  # no Python bool of a (symbolic) data size: compile stays dynamic
        if m.shape[d] == 1:
            count = count * x.shape[d]
    return count


def _squeeze(t: Tensor, dims: tuple[int, ...], keepdim: bool) -> Tensor:
    return t if keepdim or not dims else t.squeeze(dims)


def _out_mask(valid: Tensor, like: Tensor) -> Tensor:
    """The output mask at the output's shape (an expanded view: no copy)."""
    return valid.expand(like.shape) if valid.shape != like.shape else valid


class _Plan(NamedTuple):
    """How a masked sum runs as a batched product ``mask (P, 1, R) @ data (P, R, Q) -> (P, 1, Q)``.

    The data (contiguous) is split into three blocks of consecutive dimensions: ``P``
    (any), ``R`` (reduced, read with the mask), ``Q`` (the mask is shared along them);
    ``q_first`` when the blocks lie in the order ``P, Q, R`` (the data is then read as
    ``(P, Q, R)`` transposed), else ``P, R, Q``. ``mask_shape`` is the mask expanded over
    ``P`` and ``R`` (size 1 along ``Q``); ``out_shape`` the product's keepdim shape before
    ``after``, the reduced dimensions of ``P`` and ``Q`` summed from the small product.
    """

    p: int
    q: int
    r: int
    q_first: bool
    mask_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    after: tuple[int, ...]
    #: The data's dimensions in memory order when it is not contiguous but a permutation of a
    #: contiguous tensor (channels_last): the blocks are taken on ``x.permute(perm)``.
    perm: tuple[int, ...] | None = None


def _memory_order(x: Tensor) -> tuple[int, ...] | None:
    """The permutation that makes a dense but non-contiguous ``x`` contiguous (channels_last:
    ``(0, 2, 3, 1)``), or None when there is none (a strided slice, an expanded view)."""
    strides = x.stride()
    perm = tuple(sorted(range(x.dim()), key=lambda i: -strides[i]))
    return perm if x.permute(perm).is_contiguous() else None


def _find_plan(x: Tensor, m: Tensor, dims: tuple[int, ...]) -> _Plan | None:
    """The product layout for contiguous data, or for data contiguous in another dimension order."""
    if x.is_contiguous():
        return _plan(tuple(x.shape), tuple(m.shape), dims)
    perm = _memory_order(x)
    if perm is None or m.dim() != x.dim():
        return None
    pdims = tuple(sorted(perm.index(d) for d in dims))
    plan = _plan(tuple(x.shape[i] for i in perm), tuple(m.shape[i] for i in perm), pdims)
    return None if plan is None else plan._replace(perm=perm)


#: Elements per chunk of the product path (1 MB of float32): a chunk with a masked NaN/Inf is
#: selected into a buffer that stays in L2, and a NaN in the first chunk wastes little.
_PRODUCT_CHUNK = 1 << 18
#: The product path needs the mask shared along at least this many elements per row ...
_MIN_Q = 2
#: ... and rows of at least this many reduced elements (shorter rows: the chunked select).
_MIN_R = 8


@functools.lru_cache(maxsize=256)
def _plan(xs: tuple[int, ...], ms: tuple[int, ...], dims: tuple[int, ...]) -> _Plan | None:
    """The cheapest product layout for ``sum(where(m, x, 0), dims)``, or None when none fits.

    Shapes only (cached): the reduced block ``R`` must be reduced along every dimension
    and the block ``Q`` next to it must have the mask shared (size 1) along every
    dimension. The cost counted is what is written: the float mask ``P x R`` and the
    product ``P x Q``.
    """
    nd = len(xs)
    if len(ms) != nd or not dims:
        return None
    red = [i in dims or xs[i] == 1 for i in range(nd)]
    one = [ms[i] == 1 for i in range(nd)]
    best: tuple[int, _Plan] | None = None
    for a in range(nd):
        for b in range(a + 1, nd):
            for q_first in (True, False):
                q_dims = range(a, b) if q_first else range(b, nd)
                r_dims = range(b, nd) if q_first else range(a, b)
                if not all(one[i] for i in q_dims) or not all(red[i] for i in r_dims):
                    continue
                p, q, r = (
                    math.prod(xs[:a]),
                    math.prod(xs[i] for i in q_dims),
                    math.prod(xs[i] for i in r_dims),
                )
                if q < _MIN_Q or r < _MIN_R:
                    continue
                cost = p * r + p * q
                if best is not None and best[0] <= cost:
                    continue
                mask_shape = tuple(1 if i in q_dims else s for i, s in enumerate(xs))
                out_shape = tuple(1 if i in r_dims else s for i, s in enumerate(xs))
                after = tuple(d for d in dims if d not in r_dims and xs[d] != 1)
                best = (cost, _Plan(p, q, r, q_first, mask_shape, out_shape, after))
    return None if best is None else best[1]


def _finite(t: Tensor) -> bool:
    """Whether every element of the (small) ``t`` is finite: its sum is (an overflow of finite
    values says no too, and only costs the fallback)."""
    return math.isfinite(float(t.sum()))


def _aligned_like(t: Tensor, base: Tensor) -> Tensor:
    """A contiguous view into ``base`` shaped like ``t`` whose address is ``t``'s modulo 64 bytes.

    MKL's matrix products choose their vector loop by the operands' alignment, and so their
    order of additions: the same product on a buffer aligned otherwise can round differently.
    """
    size = t.element_size()
    off = ((t.data_ptr() - base.data_ptr()) % 64) // size
    return base[off : off + t.numel()].view(t.shape)


def _product_sum(x: Tensor, m: Tensor, plan: _Plan, dtype: torch.dtype) -> Tensor:
    """The masked sum as batched matrix-vector products (reads ``x`` once, as ``x.sum``).

    Each product is exact (``v * 1 = v``; ``v * 0 = ±0`` for finite ``v``), so masked
    finite values never change a result; only a masked NaN/Inf can (``0 * inf = NaN``).
    The batch ``P`` runs in chunks (their bounds depend on the shapes only). A chunk whose
    result is not finite is recomputed by the same product on its selected copy (masked
    values exactly 0: a valid NaN/Inf propagates, a masked one never does), in a buffer
    aligned as the chunk, so that the result at a valid output is bit for bit the same
    whatever the masked values hold (the leakage contract). If the first chunk is not
    finite, every chunk is selected first (data with NaN holes: one select pass, in cache,
    and the product), otherwise the others are checked once at the end.
    """
    if plan.perm is not None:  # contiguous in another order: the same product on the permuted view
        inverse = tuple(plan.perm.index(i) for i in range(x.dim()))
        res = _product_sum(x.permute(plan.perm), m.permute(plan.perm), plan._replace(perm=None), dtype)
        return res.permute(inverse).contiguous()
    p, q, r = plan.p, plan.q, plan.r
    mb = m.expand(plan.mask_shape).reshape(p, 1, r)
    mf = mb.to(x.dtype)
    if plan.q_first:  # x (P, Q, R): the product reads it transposed
        x3, m3 = x.view(p, q, r), mb
    else:  # x (P, R, Q)
        x3, m3 = x.view(p, r, q), mb.view(p, r, 1)
    out = torch.empty((p, 1, q), dtype=dtype)
    step = max(1, _PRODUCT_CHUNK // max(1, q * r))
    ranges = [(i, min(i + step, p)) for i in range(0, p, step)]
    sel: list[Tensor] = []  # the buffer, made once, when a chunk needs the select

    def run(i: int, j: int, selected: bool) -> None:
        src = x3[i:j]
        if selected:
            if not sel:
                sel.append(torch.empty(min(step, p) * q * r + 64 // x.element_size(), dtype=x.dtype))
            src = select_into(src, m3[i:j], out=_aligned_like(src, sel[0]))
        torch.bmm(mf[i:j], src.transpose(1, 2) if plan.q_first else src, out=out[i:j])

    run(*ranges[0], selected=False)
    if not _finite(out[: ranges[0][1]]):
        for i, j in ranges:
            run(i, j, selected=True)
    elif len(ranges) > 1:
        for i, j in ranges[1:]:
            run(i, j, selected=False)
        rest = out[ranges[1][0] :]
        if not _finite(rest):
            bad = (~torch.isfinite(out.view(p, q)).all(1)).tolist()
            for i, j in ranges[1:]:
                if any(bad[i:j]):
                    run(i, j, selected=True)
    res = out.view(plan.out_shape)
    return res.sum(plan.after, keepdim=True) if plan.after else res


class _SelectSum(torch.autograd.Function):
    """``torch.where(m, x, 0).sum(dims, keepdim=True, dtype=dtype)`` on eager CPU.

    When the mask is shared along some dimensions next to the reduced ones (an
    ``(N, 1, H, W)`` mask summed over ``(2, 3)``; ``(N, T, 1)`` over ``1``) and the data
    is float32/float64 and dense (contiguous, or channels_last), the sum is a batched
    matrix-vector product with the mask as floats (``_product_sum``): one read of the
    data. Otherwise the bitwise select writes one chunk of the batch at a time into a
    small buffer that stays in cache and is summed at once. The backward is ``select`` of
    the expanded gradient (itself differentiable, so double backward works).
    """

    @staticmethod
    def forward(
        x: Tensor, m: Tensor, dims: tuple[int, ...], dtype: torch.dtype, plan: _Plan | None
    ) -> Tensor:
        if plan is not None:
            return _product_sum(x, m, plan, dtype)
        if 0 in dims:  # the chunks run along dimension 0
            return select(x, m).sum(dims, keepdim=True, dtype=dtype)
        return _chunked_sum(x, m, dims, dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, m = inputs[0], inputs[1]
        ctx.save_for_backward(m)
        ctx.shape = x.shape
        ctx.xdtype = x.dtype

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (m,) = ctx.saved_tensors
        g = grad.to(ctx.xdtype).expand(ctx.shape)
        return select(g, m), None, None, None, None


def _chunked_sum(x: Tensor, m: Tensor, dims: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """The bitwise select and sum, chunk by chunk along dimension 0 (not reduced)."""
    n = int(x.shape[0])
    row = max(1, x.numel() // max(n, 1))
    step = max(1, _CHUNK // row)
    out = torch.empty([1 if i in dims else int(s) for i, s in enumerate(x.shape)], dtype=dtype)
    buf = torch.empty((min(step, n), *x.shape[1:]), dtype=x.dtype)
    for i in range(0, n, step):
        j = min(i + step, n)
        part = select_into(x[i:j], m if m.shape[0] == 1 else m[i:j], out=buf[: j - i])
        torch.sum(part, dims, keepdim=True, dtype=dtype, out=out[i:j])
    return out


def _select_sum(x: Tensor, m: Tensor, dims: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``torch.where(m, x, 0).sum(dims, keepdim=True, dtype=dtype)``: exact, NaN-safe, composable."""
    if not dims:
        return select(x, m).to(dtype)
    if fast_path(x, m) and x.dtype in _FLOATS and x.dim() >= 2 and x.numel() > 0:  # fast_path first
        plan = None
        if x.dtype == dtype and dtype in _PRODUCT and not torch.is_autocast_enabled("cpu"):
            plan = _find_plan(x, m, dims)
        if plan is not None or 0 not in dims:
            out: Tensor = _SelectSum.apply(x, m, dims, dtype, plan)
            return out
    return select(x, m).sum(dims, keepdim=True, dtype=dtype)


def _sum_dtype(x: Tensor) -> torch.dtype:
    """torch's dtype of ``x.sum()``: int64 for integers and bool, else the data's."""
    return x.dtype if x.is_floating_point() or x.is_complex() else torch.int64


def masked_sum(
    x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False, *, dtype: torch.dtype | None = None
) -> Masked:
    """Sum of the valid elements along ``dim`` (every dimension when ``None`` or ``()``).

    The result's dtype is ``torch.sum``'s: ``dtype`` when given, ``int64`` for integer
    or bool data (exact), else the data's (half precision accumulates in float32).
    Positions with no valid element are 0 with a False mask.

    On eager CPU, float32/float64 data with a mask shared along dimensions next to the
    reduced ones (e.g. ``(N, 1, H, W)`` over ``(2, 3)``) is summed as a matrix product
    with the mask: equal to ``torch.where(mask, x, 0).sum(dim)`` within float rounding
    (another order of additions), not bit for bit.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, float("nan"), 3.0]])
        >>> masked_sum(x, ~x.isnan(), dim=1).data
        tensor([4.])
        >>> masked_sum(torch.tensor([2**24 + 1, 7]), torch.tensor([True, False])).data
        tensor(16777217)
    """
    op = "masked_sum"
    x, m = _prepare(op, x, mask)
    dims = _dims(op, x, dim)
    out_dtype = dtype if dtype is not None else _sum_dtype(x)
    acc = torch.float32 if out_dtype in _HALF else out_dtype
    total = _select_sum(x if dtype is None else x.to(dtype), m, dims, acc).to(out_dtype)
    valid = _squeeze(_count(x, m, dims) > 0, dims, keepdim)
    total = _squeeze(total, dims, keepdim)
    return Masked(total, _out_mask(valid, total))


def _mean_parts(
    op: str, x: Tensor, m: Tensor, dims: tuple[int, ...], dtype: torch.dtype | None
) -> tuple[Tensor, Tensor, torch.dtype]:
    """(mean with keepdim in the accumulation dtype, count (int64, keepdim), result dtype)."""
    if dtype is None:
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(
                f"{op}: integer data ({x.dtype}) has no mean dtype, as in torch.mean; pass "
                "dtype=torch.float64 (exact for integers below 2**53) or another floating dtype"
            )
        dtype = x.dtype
    if not (dtype.is_floating_point or dtype.is_complex):
        raise TypeError(f"{op}: expected a floating dtype, got {dtype}")
    acc = torch.float32 if dtype in _HALF else dtype
    if x.is_floating_point() or x.is_complex():
        total = _select_sum(x, m, dims, acc)
    else:  # integers: an exact int64 sum, then one division in the result's dtype
        total = _select_sum(x, m, dims, torch.int64).to(acc)
    count = _count(x, m, dims)
    # 0 where nothing is valid: the total is 0 there, and 0 / 1 = 0 (no NaN, no where).
    return total / count.clamp_min(1).to(acc), count, dtype


def masked_mean(
    x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False, *, dtype: torch.dtype | None = None
) -> Masked:
    """Mean of the valid elements along ``dim``; 0 (and mask False) where none is valid.

    Integer data needs a floating ``dtype`` (as ``torch.mean``); its sum is taken
    exactly in int64 before the division. Half precision accumulates in float32. The sum
    may run as a matrix product (see [`masked_sum`][masknn.functional.masked_sum]).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, 5.0, 3.0], [2.0, 2.0, 2.0]])
        >>> m = torch.tensor([[True, False, True], [False, False, False]])
        >>> r = masked_mean(x, m, dim=1)
        >>> r.data, r.mask
        (tensor([2., 0.]), tensor([ True, False]))
        >>> masked_mean(torch.tensor([2**24 + 1]), torch.tensor([True]), dtype=torch.float64).data
        tensor(16777217., dtype=torch.float64)
    """
    op = "masked_mean"
    x, m = _prepare(op, x, mask)
    dims = _dims(op, x, dim)
    mean, count, out_dtype = _mean_parts(op, x, m, dims, dtype)
    mean = _squeeze(mean, dims, keepdim).to(out_dtype)
    valid = _squeeze(count > 0, dims, keepdim)
    return Masked(mean, _out_mask(valid, mean))


def masked_var(
    x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False, correction: int = 1
) -> Masked:
    """Variance of the valid elements with Bessel ``correction`` (as ``torch.var``).

    Valid where more than ``correction`` elements are valid; 0 elsewhere. Two passes
    (mean, then centred squares), accumulated in float32 for half precision.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, 3.0, float("nan")]])
        >>> masked_var(x, ~x.isnan(), dim=1).data
        tensor([2.])
    """
    op = "masked_var"
    x, m = _prepare(op, x, mask)
    _floating(op, x)
    dims = _dims(op, x, dim)
    mean, count, _ = _mean_parts(op, x, m, dims, None)
    acc = mean.dtype
    dev = select(x.to(acc) - mean, m)
    sq = (dev * dev).sum(dims, keepdim=True) if dims else dev * dev
    valid = count > correction
    var = torch.where(
        valid, sq / (count - correction).clamp_min(1).to(acc), torch.zeros((), dtype=acc, device=x.device)
    )
    var = _squeeze(var, dims, keepdim).to(x.dtype)
    return Masked(var, _out_mask(_squeeze(valid, dims, keepdim), var))


def masked_std(
    x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False, correction: int = 1
) -> Masked:
    """Standard deviation of the valid elements (see [`masked_var`][masknn.functional.masked_var]).

    The gradient stays finite where the variance is 0.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, 3.0, float("nan")]])
        >>> masked_std(x, ~x.isnan(), dim=1).data
        tensor([1.4142])
    """
    var = masked_var(x, mask, dim, keepdim, correction)
    pos = var.data > 0
    safe = torch.where(pos, var.data, torch.ones((), dtype=var.data.dtype, device=var.data.device))
    zero = torch.zeros((), dtype=var.data.dtype, device=var.data.device)
    return Masked(torch.where(pos, safe.sqrt(), zero), var.mask)


def _extreme(op: str, x: Tensor, mask: Tensor, dim: Dims, keepdim: bool, largest: bool) -> Masked:
    x, m = _prepare(op, x, mask)
    dims = _dims(op, x, dim)
    if x.dtype == torch.bool:
        raise TypeError(f"{op}: bool data is not supported")
    valid = _squeeze(_count(x, m, dims) > 0, dims, keepdim)
    if any(x.shape[d] == 0 for d in dims):
        # torch.amax refuses an empty reduction; nothing is valid there: zeros, mask False.
        shape = [1 if i in dims else s for i, s in enumerate(x.shape)]
        val = _squeeze(torch.zeros(shape, dtype=x.dtype, device=x.device), dims, keepdim)
        return Masked(val, _out_mask(valid, val))
    if x.is_floating_point():
        sentinel = torch.tensor(-torch.inf if largest else torch.inf, dtype=x.dtype, device=x.device)
    else:
        info = torch.iinfo(x.dtype)
        sentinel = torch.tensor(info.min if largest else info.max, dtype=x.dtype, device=x.device)
    xs = torch.where(m, x, sentinel)
    if dims:
        val = xs.amax(dim=dims, keepdim=keepdim) if largest else xs.amin(dim=dims, keepdim=keepdim)
    else:
        val = xs
    out = torch.where(valid, val, torch.zeros((), dtype=x.dtype, device=x.device))
    return Masked(out, _out_mask(valid, out))


def masked_max(x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False) -> Masked:
    """Maximum of the valid elements; 0 (mask False) where none is valid, also over an empty dim.

    As ``torch.amax``, the gradient is shared evenly between tied maxima.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, 9.0, 3.0]])
        >>> masked_max(x, torch.tensor([[True, False, True]]), dim=1).data
        tensor([3.])
        >>> r = masked_max(torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool), dim=1)
        >>> r.data, r.mask
        (tensor([0., 0.]), tensor([False, False]))
    """
    return _extreme("masked_max", x, mask, dim, keepdim, largest=True)


def masked_min(x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False) -> Masked:
    """Minimum of the valid elements; 0 (mask False) where none is valid.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, -9.0, 3.0]])
        >>> masked_min(x, torch.tensor([[True, False, True]]), dim=1).data
        tensor([1.])
    """
    return _extreme("masked_min", x, mask, dim, keepdim, largest=False)


def _fill_for_any(x: Tensor, m: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``-inf`` where a slice has a valid element, else 0 (keepdim, the mask's shape).

    Masked elements take this value before softmax/logsumexp: they get no weight, and a
    slice with no valid element stays finite (no NaN in the forward or the backward).
    """
    if any(x.shape[d] == 0 for d in dims):
        anyv = _count(x, m, dims) > 0
    else:
        anyv = m.any(dims[0], keepdim=True) if len(dims) == 1 else _count(x, m, dims) > 0
    ninf = torch.tensor(-torch.inf, dtype=x.dtype, device=x.device)
    return torch.where(anyv, ninf, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_logsumexp(x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False) -> Masked:
    """``log(sum(exp(x)))`` over the valid elements; 0 (mask False) where none is valid.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[0.0, float("nan"), 0.0]])
        >>> masked_logsumexp(x, ~x.isnan(), dim=1).data
        tensor([0.6931])
    """
    op = "masked_logsumexp"
    x, m = _prepare(op, x, mask)
    _floating(op, x)
    dims = _dims(op, x, dim)
    if not dims:
        return Masked(select(x, m), _out_mask(m, x))
    z = torch.where(m, x, _fill_for_any(x, m, dims))
    lse = torch.logsumexp(z, dims, keepdim=True)
    valid = _count(x, m, dims) > 0
    lse = _squeeze(
        torch.where(valid, lse, torch.zeros((), dtype=lse.dtype, device=lse.device)), dims, keepdim
    )
    return Masked(lse, _out_mask(_squeeze(valid, dims, keepdim), lse))


def _softmax_composite(x: Tensor, m: Tensor, d: int, log: bool) -> Tensor:
    """Plain ops: masked elements take ``-inf`` (0 in slices with no valid element), then exact 0."""
    z = torch.where(m, x, _fill_for_any(x, m, (d,)))
    return select(z.log_softmax(d) if log else z.softmax(d), m)


class _Softmax(torch.autograd.Function):
    """Eager-CPU masked (log-)softmax with the passes of ``masked_fill(-inf).softmax``.

    Softmax already gives exact zeros at masked elements of slices with a valid element
    (``exp(-inf) = 0``); only slices with no valid element are zeroed (rarely: a
    multiplication by the slice's any-valid flag). The backward selects the incoming
    gradient first (a NaN/Inf cotangent at a masked element reaches nothing) and calls
    softmax's own backward kernel, which gives exact zeros wherever the output is 0.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, m: Tensor, d: int, log: bool) -> Tensor:
        anyv = m.any(d, keepdim=True)
        ninf = torch.tensor(-torch.inf, dtype=x.dtype)
        z = torch.where(m, x, torch.where(anyv, ninf, torch.zeros((), dtype=x.dtype)))
        if log:
            out = z.log_softmax(d)
            select_into(out, m, out=out)  # -inf -> 0
        else:
            out = z.softmax(d)
            if not bool(anyv.all()):  # eager only: zero the slices that have no valid element
                out.mul_(anyv)
        ctx.save_for_backward(x, m, out)
        ctx.args = (d, log)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, m, out = ctx.saved_tensors
        d, log = ctx.args
        if torch.is_grad_enabled() or not fast_path(grad):
            (gx,) = differentiable_backward(
                lambda a: _softmax_composite(a, m, d, log), (x,), (grad,), (True,)
            )
            return gx, None, None, None
        g = select_into(grad, m)
        if log:
            gx = torch._log_softmax_backward_data(g, out, d, x.dtype)
            select_into(gx, m, out=gx)
        else:
            gx = torch._softmax_backward_data(g, out, d, x.dtype)
        return gx, None, None, None


def _softmax(op: str, x: Tensor, mask: Tensor, dim: int, log: bool) -> Masked:
    x, m = _prepare(op, x, mask)
    _floating(op, x)
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{op}: expected dim as an int, got {dim!r}")
    (d,) = _dims(op, x, dim) or (0,)
    if x.dim() == 0:
        return Masked(select(x - x, m) if log else select(torch.ones_like(x), m), m)
    if fast_path(x, m) and x.dtype in _FLOATS and x.numel() > 0 and not torch.is_autocast_enabled("cpu"):
        out: Tensor = _Softmax.apply(x, m, d, log)
        return Masked(out, m)
    return Masked(_softmax_composite(x, m, d, log), m)


def masked_softmax(x: Tensor, mask: Tensor, dim: int) -> Masked:
    """Softmax over the valid elements along ``dim``; masked elements get exactly 0.

    A slice with no valid element gives all zeros (not NaN). The output mask is
    the input mask. Computed as ``torch.where(mask, x, -inf).softmax(dim)`` with 0
    instead of ``-inf`` in slices with no valid element, then exact zeros at masked
    elements: no NaN in the forward nor the backward.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[0.0, 100.0, 0.0]])
        >>> masked_softmax(x, torch.tensor([[True, False, True]]), dim=1).data
        tensor([[0.5000, 0.0000, 0.5000]])
    """
    return _softmax("masked_softmax", x, mask, dim, log=False)


def masked_log_softmax(x: Tensor, mask: Tensor, dim: int) -> Masked:
    """Log-softmax over the valid elements along ``dim``; exactly 0 at masked elements.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[0.0, float("nan"), 0.0]])
        >>> masked_log_softmax(x, ~x.isnan(), dim=1).data
        tensor([[-0.6931,  0.0000, -0.6931]])
    """
    return _softmax("masked_log_softmax", x, mask, dim, log=True)
