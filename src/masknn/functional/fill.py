"""Filling masked positions before a plain layer, and feeding the mask as channels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, check_dim, check_number, shape_str, to_bool_mask
from masknn.functional._layout import follow_layout
from masknn.functional._spatial import select
from masknn.functional.reductions import masked_mean

__all__ = ["FILL_STRATEGIES", "fill", "mask_channel"]

#: Strategies understood by [`fill`][masknn.functional.fill.fill].
FILL_STRATEGIES = ("zero", "constant", "mean")


def fill(
    x: Tensor,
    mask: Tensor,
    strategy: str = "zero",
    value: float = 0.0,
    dims: Sequence[int] | None = None,
) -> Tensor:
    """Replace masked positions of ``x``, returning a plain tensor for plain layers.

    Strategies:

    * ``"zero"``: 0;
    * ``"constant"``: ``value``;
    * ``"mean"``: the mean of the valid values of the same sample and channel,
      taken over ``dims`` (default: every dimension after the first two, i.e.
      the spatial ones of ``(N, C, *)``; pass ``dims=(1,)`` for sequences
      ``(N, T, F)``). A sample/channel with no valid value is filled with 0.

    Selection uses ``torch.where``, so NaN or Inf at masked positions never leak
    into the output or the gradient. ``fill`` is where data leaves the masked
    world, so unlike the other functional ops it returns a plain tensor.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0]]])
        >>> fill(x, ~x.isnan(), "mean")
        tensor([[[1., 2., 3.]]])
    """
    return fill_values("fill", x, mask, strategy, value, dims)


def fill_values(
    op: str, x: Tensor, mask: Tensor, strategy: str, value: float, dims: Sequence[int] | None
) -> Tensor:
    """``fill`` with errors naming ``op``."""
    x = check_data(op, x)
    if strategy not in FILL_STRATEGIES:
        raise ValueError(f"{op}: strategy must be one of {FILL_STRATEGIES}, got {strategy!r}")
    m = follow_layout(to_bool_mask(op, x, mask), x)
    if strategy == "zero":
        return select(x, m)
    if strategy == "constant":
        check_number(op, "value", value)
        return torch.where(m, x, torch.full((), value, dtype=x.dtype, device=x.device))
    # "mean"
    if not x.is_floating_point():
        raise TypeError(f"{op}: strategy 'mean' expects floating point data, got dtype {x.dtype}")
    if dims is None:
        if x.dim() < 3:
            raise ValueError(
                f"{op}: strategy 'mean' with default dims expects (N, C, *) data with "
                f"at least 3 dimensions, got {shape_str(x.shape)}; pass dims explicitly"
            )
        dims = tuple(range(2, x.dim()))
    elif isinstance(dims, int) or not isinstance(dims, Sequence):
        raise TypeError(f"{op}: expected dims as a sequence of ints, got {dims!r}")
    reduce = tuple(check_dim(op, "dims entry", d, x.dim()) for d in dims)
    stat = masked_mean(x, m, dim=reduce, keepdim=True).data
    return torch.where(m, x, stat.to(x.dtype))


def mask_channel(x: Tensor, mask: Tensor, dim: int = 1) -> Masked:
    """Append the mask as float channel(s) (1 = valid) along ``dim``.

    The data is zero-filled at masked positions. A channel-shared mask
    ``(N, 1, *)`` adds one channel; a per-channel mask ``(N, C, *)`` adds C.
    The appended channels are known everywhere, so the output mask marks them
    valid: the result is ``Masked(cat(x_zero_filled, m), cat(mask, ones))``.

    Examples:
        >>> import torch
        >>> x = torch.ones(1, 2, 1, 2)
        >>> out = mask_channel(x, torch.tensor([[[[True, False]]]]))
        >>> out.data[0, :, 0]
        tensor([[1., 0.],
                [1., 0.],
                [1., 0.]])
        >>> out.mask.shape
        torch.Size([1, 3, 1, 2])
    """
    return append_mask("mask_channel", x, mask, dim)


def append_mask(op: str, x: Tensor, mask: Tensor, dim: int) -> Masked:
    """``mask_channel`` with errors naming ``op``; ``dim`` out of range raises an ``OutOfRangeError``
    (a ``ValueError`` and an ``IndexError``, what ``torch.cat`` raises), never wraps around."""
    x = check_data(op, x)
    m = follow_layout(to_bool_mask(op, x, mask), x)
    if x.dim() < 2:
        raise ValueError(f"{op}: expected data with a channel dimension, got {shape_str(x.shape)}")
    d = check_dim(op, "dim", dim, x.dim())
    shape = list(x.shape)
    shape[d] = m.shape[d]
    m_ch = m.expand(shape)
    # The appended channels in the data's memory format: cat keeps channels_last only when
    # every input has it.
    data = torch.cat([select(x, m), m_ch.to(dtype=x.dtype, memory_format=_format(x))], dim=d)
    out_mask = torch.cat([m.expand(x.shape), torch.ones_like(m_ch)], dim=d)
    return Masked(data, out_mask)


def _format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format
