"""The Python operators of [`masknn.Masked`][]: ``a + b``, ``a - b``, ``a * b``, ``a / b``, ``-a``.

Semantics (the ``Masked`` docstring and ``docs/guide/mask-convention.md`` give them to
users):

* two ``Masked``: ``+``/``-`` are [`masknn.functional.masked_add`][] (masked terms count
  as 0, union of the masks; ``a - b`` is ``a + (-b)``), ``*`` is
  [`masknn.functional.masked_mul`][] (intersection), ``/`` divides where both are
  valid (intersection);
* a ``Masked`` ``x`` and a plain tensor or number ``s``, in either order: ``s`` modifies
  the valid data (a gate, a layer scale, a bias, noise), so the result keeps ``x``'s
  mask;
* the result holds exactly 0 at masked positions, and masked values reach no valid
  value and no gradient (the masked operand is selected before any product or
  quotient, never multiplied by the mask).

``masknn._masked`` cannot import these (it sits below [`masknn.functional`][]), so
importing this module installs them into ``masknn._masked._OPERATORS``;
``masknn/__init__.py`` imports it.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor

from masknn._masked import _OPERATORS, Masked
from masknn.functional._select import select
from masknn.functional.combine import masked_add, masked_mul

__all__: list[str] = []

Operand = Masked | Tensor | complex
Plain = Tensor | complex


def _mask_for(x: Masked, out: Tensor) -> Tensor:
    """``x``'s mask with leading size-1 dimensions up to ``out``'s number of dimensions."""
    mask = x.mask
    extra = out.dim() - mask.dim()
    return mask.reshape((1,) * extra + tuple(mask.shape)) if extra > 0 else mask


def _keep_mask(x: Masked, out: Tensor) -> Masked:
    """``out`` (computed from ``x.data`` and a plain operand) under ``x``'s mask, canonical."""
    mask = _mask_for(x, out)
    return Masked._unchecked(select(out, mask), mask)


def add(a: Operand, b: Operand) -> Masked:
    """``a + b`` (one of them at least a ``Masked``)."""
    if isinstance(a, Masked):
        if isinstance(b, Masked):
            return masked_add(a.data, a.mask, b.data, b.mask)
        return _keep_mask(a, a.data + b)
    x = cast(Masked, b)
    return _keep_mask(x, a + x.data)


def sub(a: Operand, b: Operand) -> Masked:
    """``a - b``; for two ``Masked`` the same as ``a + (-b)``."""
    if isinstance(a, Masked):
        if isinstance(b, Masked):
            return masked_add(a.data, a.mask, -b.data, b.mask)
        return _keep_mask(a, a.data - b)
    x = cast(Masked, b)
    return _keep_mask(x, a - x.data)


def mul(a: Operand, b: Operand) -> Masked:
    """``a * b``: intersection for two ``Masked``, else the ``Masked`` operand's mask."""
    if isinstance(a, Masked) and isinstance(b, Masked):
        return masked_mul(a.data, a.mask, b.data, b.mask)
    x, s = (a, cast(Plain, b)) if isinstance(a, Masked) else (cast(Masked, b), a)
    # A plain operand is valid everywhere, so the result has x's mask. Select before the
    # product, so that the gradient of s never meets a masked value (0 * NaN), and after
    # it (Inf * 0 = NaN). Unlike masked_mul(x, m, s, ones), this never expands s or the
    # mask to the full shape, and a number or a 0-d tensor keeps its weak role in type
    # promotion (torch.where would broadcast it).
    return _keep_mask(x, select(x.data, x.mask) * s)


def truediv(a: Operand, b: Operand) -> Masked:
    """``a / b``, computed only where the result is valid (the denominator is 1 elsewhere)."""
    if isinstance(a, Masked):
        if isinstance(b, Masked):
            both = a.mask & b.mask
            out = torch.where(both, a.data, 0) / torch.where(both, b.data, 1)
            return Masked._unchecked(out, both)
        if not isinstance(b, Tensor) or b.dim() == 0:
            # A number or a 0-d tensor: no masked position to guard in b, and torch.where
            # would broadcast it and lose its weak role in type promotion.
            return _keep_mask(a, select(a.data, a.mask) / b)
        out = select(a.data, a.mask) / torch.where(a.mask, b, 1)
        return Masked._unchecked(out, _mask_for(a, out))
    x = cast(Masked, b)
    return _keep_mask(x, a / torch.where(x.mask, x.data, 1))


def neg(a: Masked) -> Masked:
    """``-a``: the valid data negated, +0.0 at masked positions."""
    return _keep_mask(a, -a.data)


_OPERATORS.update(add=add, sub=sub, mul=mul, truediv=truediv, neg=neg)
