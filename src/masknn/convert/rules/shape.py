"""Shape rules: the mask follows the data exactly through every view, reshape and index.

Two kinds:

* *follow*: ``permute``, ``transpose``, ``movedim``, ``squeeze``/``unsqueeze``, ``flip``,
  ``roll``, ``narrow``, ``select``, indexing, ``expand``, ``repeat``, ``chunk``/``split``/
  ``unbind``, ``channel_shuffle``, ``pixel_shuffle``: the same function with the same
  arguments is applied to the mask expanded (as a stride-0 view, no copy) to the data's
  shape, and the result is ``compress``-ed back, so a
  channel-shared mask stays channel-shared;
* *reshape*: ``view``, ``reshape``, ``flatten``, ``unflatten``, ``view_as``/``reshape_as``:
  the old and new shapes are split into the smallest blocks of dimensions with equal
  sizes; a block over which the mask has size 1 keeps size 1, a block the mask covers in
  full is reshaped with it, and only a block that mixes the two is expanded first. A
  mask shared over the channels thus stays shared through ``flatten``, and the channel
  split of a channel shuffle costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from masknn.convert import _table
from masknn.convert._carrier import MaskedCarrier, carriers, carry, compress, unsupported, unwrap

__all__ = ["reshape_mask"]

_FOLLOW = (
    "permute",
    "transpose",
    "swapaxes",
    "swapdims",
    "movedim",
    "moveaxis",
    "t",
    "squeeze",
    "unsqueeze",
    "flip",
    "fliplr",
    "flipud",
    "roll",
    "rot90",
    "narrow",
    "select",
    "__getitem__",
    "expand",
    "expand_as",
    "repeat",
    "tile",
    "chunk",
    "split",
    "tensor_split",
    "unbind",
    "unfold",
    "diagonal",
)

# Functions without a bool kernel: the mask goes through them as uint8.
_FOLLOW_UINT8 = ("pixel_shuffle", "pixel_unshuffle")
_CHANNEL_SHUFFLE = ("channel_shuffle", "native_channel_shuffle")

_RESHAPE = ("view", "reshape", "flatten", "unflatten", "view_as", "reshape_as", "ravel")


def _follow(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], as_uint8: bool = False) -> Any:
    x = args[0]
    if not isinstance(x, MaskedCarrier) or (carriers(args[1:], kwargs) and func not in _SHAPE_ONLY_OTHER):
        return _other(func, args, kwargs)
    data, mask = x._mm_data, x._mm_mask
    rest_args, rest_kwargs = unwrap(args[1:]), unwrap(kwargs)
    out = func(data, *rest_args, **rest_kwargs)
    full = mask.expand(data.shape)
    if as_uint8:
        full = full.to(torch.uint8)
    mout = func(full, *rest_args, **rest_kwargs)
    if isinstance(out, Tensor):
        return carry(out, _as_bool(mout, as_uint8))
    if isinstance(out, (tuple, list)):
        return type(out)(carry(o, _as_bool(mo, as_uint8)) for o, mo in zip(out, mout))
    raise unsupported(func, f"it returned {type(out).__name__}")


_SHAPE_ONLY_OTHER = set(_table.resolve(["expand_as", "view_as", "reshape_as"], ["Tensor"]))


def _other(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A data tensor in another role: ``plain.expand_as(carrier)`` reads only its shape (a plain
    result); a data tensor used as an index, or two data tensors, are refused."""
    if not isinstance(args[0], MaskedCarrier) and func in _SHAPE_ONLY_OTHER:
        return func(*unwrap(args), **unwrap(kwargs))
    raise unsupported(func, "a data tensor is used as an index, or two data tensors are combined")


def _as_bool(m: Tensor, from_uint8: bool) -> Tensor:
    return m.bool() if from_uint8 else m


def _blocks(old: Sequence[int], new: Sequence[int]) -> list[tuple[list[int], list[int]]] | None:
    """Split two shapes of equal size into the smallest aligned blocks of equal products.

    Returns ``[(old dims, new dims), ...]`` over the dimensions of size > 1 (size-1
    dimensions belong to no block), or ``None`` when the shapes hold no elements.
    """
    if math.prod(old) == 0:
        return None
    olds = [d for d, s in enumerate(old) if s != 1]
    news = [d for d, s in enumerate(new) if s != 1]
    blocks: list[tuple[list[int], list[int]]] = []
    a = b = 0
    while a < len(olds):
        bo, bn = [olds[a]], [news[b]]
        po, pn = old[olds[a]], new[news[b]]
        a, b = a + 1, b + 1
        while po != pn:
            if po < pn:
                bo.append(olds[a])
                po *= old[olds[a]]
                a += 1
            else:
                bn.append(news[b])
                pn *= new[news[b]]
                b += 1
        blocks.append((bo, bn))
    return blocks


def reshape_mask(mask: Tensor, old: Sequence[int], new: Sequence[int]) -> Tensor:
    """The mask of data reshaped from ``old`` to ``new`` (row-major, as ``Tensor.reshape``).

    Size-1 mask dimensions stay size 1 where a whole block of dimensions has them.

    Examples:
        >>> import torch
        >>> m = torch.ones(2, 1, 3, 3, dtype=torch.bool)
        >>> reshape_mask(m, (2, 4, 3, 3), (2, 2, 2, 3, 3)).shape  # channel split (channel shuffle)
        torch.Size([2, 1, 1, 3, 3])
        >>> reshape_mask(torch.ones(2, 1, 1, 1, dtype=torch.bool), (2, 8, 1, 1), (2, 8)).shape
        torch.Size([2, 1])
    """
    blocks = _blocks(list(old), list(new))
    if blocks is None:
        return mask.expand(list(old)).reshape(list(new))
    expand_to = list(mask.shape)
    new_shape = [1] * len(new)
    for bo, bn in blocks:
        ones = all(mask.shape[d] == 1 for d in bo)
        if ones:
            continue  # the new dimensions of the block stay 1
        for d in bo:
            expand_to[d] = old[d]
        for d in bn:
            new_shape[d] = new[d]
    return mask.expand(expand_to).reshape(new_shape)


def _reshape(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = args[0]
    if not isinstance(x, MaskedCarrier) or (carriers(args[1:], kwargs) and func not in _SHAPE_ONLY_OTHER):
        return _other(func, args, kwargs)
    data = x._mm_data
    out = func(data, *unwrap(args[1:]), **unwrap(kwargs))
    if not isinstance(out, Tensor) or out.dtype != data.dtype:
        raise unsupported(func, "it reinterprets the data's dtype, where the mask cannot follow")
    mask = reshape_mask(x._mm_mask, data.shape, out.shape)
    return carry(out, compress(mask))


_table.add(_table.resolve(_FOLLOW, ["torch", "Tensor"]), _follow)
_table.add(
    _table.resolve(_FOLLOW_UINT8, ["torch", "Tensor", "torch.nn.functional"]),
    lambda f, a, k: _follow(f, a, k, as_uint8=True),
)
_table.add(_table.resolve(_RESHAPE, ["torch", "Tensor"]), _reshape)


def _channel_shuffle(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A permutation of the channels: a channel-shared mask is unchanged."""
    x = args[0]
    if isinstance(x, MaskedCarrier) and x._mm_mask.shape[1] == 1 and not carriers(args[1:], kwargs):
        return carry(func(x._mm_data, *unwrap(args[1:]), **unwrap(kwargs)), x._mm_mask)
    return _follow(func, args, kwargs, as_uint8=True)


_table.add(_table.resolve(_CHANNEL_SHUFFLE, ["torch", "Tensor", "torch.nn.functional"]), _channel_shuffle)
_table.add([_table.getter(n) for n in ("T", "mT", "mH", "H") if hasattr(torch.Tensor, n)], _follow)
