"""Combining masked tensors: add (union), multiply (intersection), concatenate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, check_dim, shape_str, to_bool_mask
from masknn.functional._select import select

__all__ = ["masked_add", "masked_cat", "masked_mul"]


def _two(
    op: str, x: Tensor, mask: Tensor, other: Tensor, other_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x, other = check_data(op, x), check_data(op, other)
    try:
        torch.broadcast_shapes(x.shape, other.shape)
    except RuntimeError:
        raise ValueError(
            f"{op}: data shapes {shape_str(x.shape)} and {shape_str(other.shape)} do not broadcast"
        ) from None
    return x, to_bool_mask(op, x, mask), other, to_bool_mask(op, other, other_mask)


def _select_to(x: Tensor, m: Tensor) -> Tensor:
    """``torch.where(m, x, 0)`` where ``m`` may have more dimensions or larger sizes than ``x``."""
    if m.dim() <= x.dim() and tuple(torch.broadcast_shapes(x.shape, m.shape)) == tuple(x.shape):
        return select(x, m)
    return torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_add(x: Tensor, mask: Tensor, other: Tensor, other_mask: Tensor) -> Masked:
    """``x + other`` where masked terms count as 0; valid where either is (union).

    Examples:
        >>> import torch
        >>> out = masked_add(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([True, False, False]),
        ...                  torch.tensor([10.0, float("nan"), 30.0]), torch.tensor([True, False, True]))
        >>> out.data, out.mask
        (tensor([11.,  0., 30.]), tensor([ True, False,  True]))
    """
    return add("masked_add", x, mask, other, other_mask)


def add(op: str, x: Tensor, mask: Tensor, other: Tensor, other_mask: Tensor) -> Masked:
    """``masked_add`` with errors naming ``op``."""
    x, m, y, n = _two(op, x, mask, other, other_mask)
    return Masked(select(x, m) + select(y, n), m | n)


def masked_mul(x: Tensor, mask: Tensor, other: Tensor, other_mask: Tensor) -> Masked:
    """``x * other`` where both are valid (intersection), exactly 0 elsewhere.

    Examples:
        >>> import torch
        >>> out = masked_mul(torch.tensor([2.0, 2.0]), torch.tensor([True, True]),
        ...                  torch.tensor([3.0, float("inf")]), torch.tensor([True, False]))
        >>> out.data, out.mask
        (tensor([6., 0.]), tensor([ True, False]))
    """
    return mul("masked_mul", x, mask, other, other_mask)


def mul(op: str, x: Tensor, mask: Tensor, other: Tensor, other_mask: Tensor) -> Masked:
    """``masked_mul`` with errors naming ``op``."""
    x, m, y, n = _two(op, x, mask, other, other_mask)
    both = m & n
    # Select both factors (Inf * 0 would be NaN) where both are valid.
    return Masked(_select_to(x, both) * _select_to(y, both), both)


def masked_cat(tensors: Sequence[Tensor], masks: Sequence[Tensor], dim: int = 1) -> Masked:
    """Concatenate masked tensors along ``dim``; the masks are broadcast, then concatenated.

    A mask dimension other than ``dim`` stays 1 when it is 1 in every mask.

    Examples:
        >>> import torch
        >>> out = masked_cat([torch.ones(1, 1, 2), torch.zeros(1, 2, 2)],
        ...                  [torch.tensor([[[True, False]]]), torch.ones(1, 1, 2, dtype=torch.bool)])
        >>> out.data.shape, out.mask.shape
        (torch.Size([1, 3, 2]), torch.Size([1, 3, 2]))
    """
    return cat("masked_cat", tensors, masks, dim)


def cat(op: str, tensors: Sequence[Tensor], masks: Sequence[Tensor], dim: int) -> Masked:
    """``masked_cat`` with errors naming ``op``; ``dim`` out of range raises an ``OutOfRangeError``
    (a ``ValueError`` and an ``IndexError``, what ``torch.cat`` raises), never wraps around."""
    if len(tensors) == 0 or len(tensors) != len(masks):
        raise ValueError(
            f"{op}: expected as many masks as tensors (at least one), got {len(tensors)} and {len(masks)}"
        )
    xs = [check_data(op, t) for t in tensors]
    ms = [to_bool_mask(op, t, mk) for t, mk in zip(xs, masks)]
    nd = xs[0].dim()
    if any(t.dim() != nd for t in xs) or nd == 0:
        raise ValueError(
            f"{op}: expected tensors with the same number of dimensions, "
            f"got {[shape_str(t.shape) for t in xs]}"
        )
    d = check_dim(op, "dim", dim, nd)
    if any(t.shape[:d] != xs[0].shape[:d] or t.shape[d + 1 :] != xs[0].shape[d + 1 :] for t in xs):
        raise ValueError(
            f"{op}: expected shapes that agree except in dimension {d}, "
            f"got {[shape_str(t.shape) for t in xs]}"
        )
    data = torch.cat(xs, dim=d)
    common = [1 if all(mk.shape[i] == 1 for mk in ms) else int(data.shape[i]) for i in range(nd)]
    parts = []
    for t, mk in zip(xs, ms):
        shape = list(common)
        shape[d] = int(t.shape[d])
        parts.append(mk.expand(shape))
    mask = torch.cat(parts, dim=d)
    return Masked(select(data, mask), mask)
