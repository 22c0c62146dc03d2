"""Masked reductions: sum, mean, var/std, max/min, logsumexp, softmax, log-softmax.

Each takes ``(x, mask, dim=None, keepdim=False)`` and returns a
[`Masked`][masknn.Masked] whose mask tells where at least one element was valid
(for var/std: more valid elements than ``correction``). A reduction over no
valid element gives exactly 0 there (never NaN), and masked values (NaN, Inf
included) never reach the result or receive a gradient. Sums and counts of
half-precision inputs accumulate in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, to_bool_mask
from masknn.functional._spatial import select

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


def _prepare(op: str, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    x = check_data(op, x)
    m = to_bool_mask(op, x, mask).expand(x.shape)
    return x, m


def _dims(op: str, x: Tensor, dim: Dims) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(x.dim()))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -x.dim() <= d < max(x.dim(), 1):
            raise ValueError(f"{op}: dim {d} is out of range for data with {x.dim()} dimensions")
        out.append(d % max(x.dim(), 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dims {dims} repeat a dimension")
    return tuple(out)


def _acc_dtype(x: Tensor) -> torch.dtype:
    if x.dtype in (torch.float16, torch.bfloat16) or not x.is_floating_point():
        return torch.float32
    return x.dtype


def _out_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32


def _sum_count(x: Tensor, m: Tensor, dims: tuple[int, ...], keepdim: bool) -> tuple[Tensor, Tensor]:
    acc = _acc_dtype(x)
    xs = select(x, m).to(acc)  # torch.where(m, x, 0), bit by bit (2-5x faster on CPU)
    total = xs.sum(dim=dims, keepdim=keepdim) if dims else xs
    count = m.to(acc).sum(dim=dims, keepdim=keepdim) if dims else m.to(acc)
    return total, count


def masked_sum(x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False) -> Masked:
    """Sum of the valid elements along ``dim`` (all dims when ``None``).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, float("nan"), 3.0]])
        >>> masked_sum(x, ~x.isnan(), dim=1).data
        tensor([4.])
    """
    x, m = _prepare("masked_sum", x, mask)
    dims = _dims("masked_sum", x, dim)
    total, count = _sum_count(x, m, dims, keepdim)
    valid = count > 0
    return Masked(torch.where(valid, total, torch.zeros_like(total)).to(x.dtype), valid)


def _mean(op: str, x: Tensor, mask: Tensor, dim: Dims, keepdim: bool) -> tuple[Tensor, Tensor, Tensor]:
    x, m = _prepare(op, x, mask)
    dims = _dims(op, x, dim)
    total, count = _sum_count(x, m, dims, keepdim)
    valid = count > 0
    mean = torch.where(valid, total / count.clamp_min(1), torch.zeros_like(total))
    return mean, count, valid


def masked_mean(x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False) -> Masked:
    """Mean of the valid elements along ``dim``; 0 (and mask False) where none is valid.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, 5.0, 3.0], [2.0, 2.0, 2.0]])
        >>> m = torch.tensor([[True, False, True], [False, False, False]])
        >>> r = masked_mean(x, m, dim=1)
        >>> r.data, r.mask
        (tensor([2., 0.]), tensor([ True, False]))
    """
    mean, _, valid = _mean("masked_mean", x, mask, dim, keepdim)
    return Masked(mean.to(_out_dtype(x)), valid)


def masked_var(
    x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False, correction: int = 1
) -> Masked:
    """Variance of the valid elements with Bessel ``correction`` (as ``torch.var``).

    Valid where more than ``correction`` elements are valid; 0 elsewhere.
    """
    x, m = _prepare("masked_var", x, mask)
    dims = _dims("masked_var", x, dim)
    mean, count, _ = _mean("masked_var", x, m, dims, True)
    acc = _acc_dtype(x)
    dev = select(x.to(acc) - mean, m)
    sq = (dev * dev).sum(dim=dims, keepdim=keepdim) if dims else dev * dev
    if not keepdim and dims:
        count = count.reshape(sq.shape)
    valid = count > correction
    var = torch.where(valid, sq / (count - correction).clamp_min(1), torch.zeros_like(sq))
    return Masked(var.to(_out_dtype(x)), valid)


def masked_std(
    x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False, correction: int = 1
) -> Masked:
    """Standard deviation of the valid elements (see [`masked_var`][masknn.functional.masked_var]).

    The gradient stays finite where the variance is 0.
    """
    var = masked_var(x, mask, dim, keepdim, correction)
    pos = var.data > 0
    safe = torch.where(pos, var.data, torch.ones_like(var.data))
    return Masked(torch.where(pos, safe.sqrt(), torch.zeros_like(var.data)), var.mask)


def _extreme(op: str, x: Tensor, mask: Tensor, dim: Dims, keepdim: bool, largest: bool) -> Masked:
    x, m = _prepare(op, x, mask)
    dims = _dims(op, x, dim)
    if x.is_floating_point():
        sentinel = torch.tensor(-torch.inf if largest else torch.inf, dtype=x.dtype, device=x.device)
    else:
        info = torch.iinfo(x.dtype) if x.dtype != torch.bool else None
        if info is None:
            raise TypeError(f"{op}: bool data is not supported")
        sentinel = torch.tensor(info.min if largest else info.max, dtype=x.dtype, device=x.device)
    xs = torch.where(m, x, sentinel)
    if dims:
        val = xs.amax(dim=dims, keepdim=keepdim) if largest else xs.amin(dim=dims, keepdim=keepdim)
        valid = m.any(dim=dims, keepdim=keepdim)
    else:
        val, valid = xs, m
    return Masked(torch.where(valid, val, torch.zeros_like(val)), valid)


def masked_max(x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False) -> Masked:
    """Maximum of the valid elements; 0 (mask False) where none is valid.

    As ``torch.amax``, the gradient is shared evenly between tied maxima.
    """
    return _extreme("masked_max", x, mask, dim, keepdim, largest=True)


def masked_min(x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False) -> Masked:
    """Minimum of the valid elements; 0 (mask False) where none is valid."""
    return _extreme("masked_min", x, mask, dim, keepdim, largest=False)


def _lse(op: str, x: Tensor, m: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """logsumexp over ``dims`` with keepdim, and the any-valid mask (keepdim)."""
    acc = _acc_dtype(x)
    xa = x.to(acc)
    ninf = torch.tensor(-torch.inf, dtype=acc, device=x.device)
    xs = torch.where(m, xa, ninf)
    valid = m.sum(dim=dims, keepdim=True) > 0
    shift = xs.amax(dim=dims, keepdim=True)
    shift = torch.where(valid & torch.isfinite(shift), shift, torch.zeros_like(shift)).detach()
    e = torch.where(m, torch.exp(torch.where(m, xa - shift, torch.zeros_like(xa))), torch.zeros_like(xa))
    s = e.sum(dim=dims, keepdim=True)
    lse = torch.where(
        valid, torch.log(torch.where(valid, s, torch.ones_like(s))) + shift, torch.zeros_like(s)
    )
    return lse, valid


def masked_logsumexp(x: Tensor, mask: Tensor, dim: Dims = None, keepdim: bool = False) -> Masked:
    """``log(sum(exp(x)))`` over the valid elements; 0 (mask False) where none is valid."""
    x, m = _prepare("masked_logsumexp", x, mask)
    dims = _dims("masked_logsumexp", x, dim)
    if not dims:
        return Masked(torch.where(m, x, torch.zeros_like(x)), m)
    lse, valid = _lse("masked_logsumexp", x, m, dims)
    if not keepdim:
        lse, valid = lse.squeeze(dims), valid.squeeze(dims)
    return Masked(lse.to(x.dtype), valid)


def masked_softmax(x: Tensor, mask: Tensor, dim: int) -> Masked:
    """Softmax over the valid elements along ``dim``; masked elements get exactly 0.

    A slice with no valid element gives all zeros (not NaN). The output mask is
    the input mask.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[0.0, 100.0, 0.0]])
        >>> masked_softmax(x, torch.tensor([[True, False, True]]), dim=1).data
        tensor([[0.5000, 0.0000, 0.5000]])
    """
    x, m = _prepare("masked_softmax", x, mask)
    dims = _dims("masked_softmax", x, dim)
    lse, _ = _lse("masked_softmax", x, m, dims)
    acc = _acc_dtype(x)
    z = torch.where(m, x.to(acc) - lse, torch.zeros((), dtype=acc, device=x.device))
    p = torch.where(m, torch.exp(z), torch.zeros_like(z))
    return Masked(p.to(x.dtype), to_bool_mask("masked_softmax", x, mask))


def masked_log_softmax(x: Tensor, mask: Tensor, dim: int) -> Masked:
    """Log-softmax over the valid elements along ``dim``; exactly 0 at masked elements."""
    x, m = _prepare("masked_log_softmax", x, mask)
    dims = _dims("masked_log_softmax", x, dim)
    lse, _ = _lse("masked_log_softmax", x, m, dims)
    acc = _acc_dtype(x)
    z = torch.where(m, x.to(acc) - lse, torch.zeros((), dtype=acc, device=x.device))
    return Masked(z.to(x.dtype), to_bool_mask("masked_log_softmax", x, mask))
