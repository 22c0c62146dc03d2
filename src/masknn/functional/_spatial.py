"""Small helpers shared by the spatial (CNN) ops: argument normalization and mask preparation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from masknn._validation import check_data, shape_str, to_bool_mask
from masknn.functional._select import select, select_into, zero

IntOrSeq = int | Sequence[int]


def ntuple(op: str, name: str, value: IntOrSeq, n: int) -> tuple[int, ...]:
    """``value`` as a tuple of ``n`` ints (an int is repeated), or a clear ``ValueError``."""
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    if len(out) == 1:
        return out * n
    if len(out) != n:
        raise ValueError(f"{op}: expected {name} as an int or {n} ints, got {tuple(value)}")
    return out


def acc_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision (and integer) data, else the data's dtype."""
    if x.dtype in (torch.float16, torch.bfloat16) or not x.is_floating_point():
        return torch.float32
    return x.dtype


def prepare(op: str, x: object, mask: object, spatial: int | None) -> tuple[Tensor, Tensor]:
    """Check ``x`` (``(N, C, *spatial)`` when ``spatial`` is given) and return ``(x, bool mask)``.

    The mask keeps its batch and channel sizes (1 or the data's) and is expanded
    (as a view) over the spatial dimensions.
    """
    x = check_data(op, x)
    if spatial is not None and x.dim() != spatial + 2:
        names = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[spatial]
        raise ValueError(f"{op}: expected {spatial + 2}-d data {names}, got shape {shape_str(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: expected floating point data, got dtype {x.dtype}")
    m = to_bool_mask(op, x, mask, allow_sequence=False)
    if m.dim() >= 2:
        m = m.expand(m.shape[0], m.shape[1], *x.shape[2:])
    return x, m


def is_shared(m: Tensor) -> bool:
    """True when the mask is the same for every channel (size 1, or an expanded view)."""
    return m.shape[1] == 1 or m.stride(1) == 0


def shared(m: Tensor) -> Tensor:
    """The channel-shared mask ``(N, 1, ...)`` of a mask for which ``is_shared`` holds."""
    return m[:, :1]


# The select primitive lives in ``_select``; re-exported here for the spatial ops.
__all__ = [
    "IntOrSeq",
    "acc_dtype",
    "is_shared",
    "ntuple",
    "prepare",
    "select",
    "select_into",
    "shared",
    "zero",
]
