"""Small helpers shared by the spatial (CNN) ops: argument normalization and mask preparation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from masknn._validation import check_data, shape_str, to_bool_mask

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
    """The channel-shared mask ``(N, 1, ...)`` of a mask for which :func:`is_shared` holds."""
    return m[:, :1]


def zero(x: Tensor) -> Tensor:
    """A 0-d zero of ``x``'s dtype and device (for ``torch.where``)."""
    return torch.zeros((), dtype=x.dtype, device=x.device)


# ---------------------------------------------------------------- fast exact select
#: Integer dtype of the same width, for selecting floats bit by bit.
_BITS = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


class _SelectZero(torch.autograd.Function):
    """``torch.where(mask, x, 0)`` as a bitwise AND of ``x``'s bits with all-ones / all-zeros.

    Exact (NaN and Inf at masked positions become +0.0, valid values keep every bit),
    no multiplication by the mask, and several times faster than ``torch.where`` on
    CPU. The gradient is selected the same way (exactly 0 at masked positions).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, bits: Tensor) -> Tensor:
        ctx.save_for_backward(bits)
        return torch.bitwise_and(x.view(bits.dtype), bits).view(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (bits,) = ctx.saved_tensors
        return torch.bitwise_and(grad.view(bits.dtype), bits).view(grad.dtype), None


def mask_bits(m: Tensor, dtype: torch.dtype) -> Tensor:
    """The bool mask as all-ones (valid) / all-zeros integers as wide as ``dtype``."""
    return m.to(_BITS[dtype]).neg_()


def select(x: Tensor, m: Tensor) -> Tensor:
    """``torch.where(m, x, 0)`` (``m`` broadcasts to ``x``), exact for NaN/Inf, fast for float dtypes."""
    if x.dtype in _BITS and tuple(torch.broadcast_shapes(x.shape, m.shape)) == tuple(x.shape):
        out: Tensor = _SelectZero.apply(x, mask_bits(m, x.dtype))
        return out
    return torch.where(m, x, zero(x))


def _select_into(src: Tensor, mask: Tensor, out: Tensor | None = None) -> Tensor:
    """``torch.where(mask, src, 0)`` bit by bit into ``out`` (a new tensor, or ``src`` itself).

    A per-channel mask is expanded to integer bits one slice of the batch at a time,
    so no full-size integer mask is ever allocated.
    """
    itype = _BITS[src.dtype]
    if out is None:
        out = torch.empty(src.shape, dtype=src.dtype, device=src.device)
    n = src.shape[0]
    if mask.shape[1] == 1 or mask.shape[0] == 1 or n == 1:
        torch.bitwise_and(src.view(itype), mask_bits(mask, src.dtype), out=out.view(itype))
        return out
    step = max(1, n // 8)
    for i in range(0, n, step):
        part = mask_bits(mask[i : i + step], src.dtype)
        torch.bitwise_and(src[i : i + step].view(itype), part, out=out[i : i + step].view(itype))
    return out
