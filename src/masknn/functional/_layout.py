"""Masks follow the data's memory format, so that outputs keep channels_last as the twins do."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["follow_layout"]


def follow_layout(m: Tensor, x: Tensor) -> Tensor:
    """``m`` in ``x``'s channels_last(_3d) format when ``x`` has it and ``m`` is a per-channel mask.

    Element-wise ops (``torch.where``, ``cat``) give a contiguous result when their
    operands' layouts differ, so a per-channel mask ``(N, C, ...)`` in the default layout
    would turn channels_last data contiguous. A channel-shared mask ``(N, 1, ...)`` is in
    both layouts already and is returned as it is (no copy); so is every mask of
    contiguous data.
    """
    if x.dim() not in (4, 5) or m.dim() != x.dim() or m.shape[1] == 1 or m.stride(1) == 0:
        return m
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    if x.is_contiguous() or not x.is_contiguous(memory_format=fmt) or m.is_contiguous(memory_format=fmt):
        return m
    return m.contiguous(memory_format=fmt)
