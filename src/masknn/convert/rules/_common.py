"""Helpers shared by the layer rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from masknn.convert._carrier import MaskedCarrier, unsupported

__all__ = ["one_data"]


def one_data(func: Any, x: Any, others: Iterable[Any] = ()) -> tuple[Tensor, Tensor]:
    """``(data, mask)`` of the data argument ``x``; the conversion error when ``x`` is not data
    or when data is passed where the layer expects a parameter (a weight computed from data)."""
    if not isinstance(x, MaskedCarrier):
        raise unsupported(func, "its data argument is a plain tensor while another argument is data")
    if any(isinstance(o, MaskedCarrier) for o in others):
        raise unsupported(func, "a weight, bias or statistic computed from the data (dynamic weights)")
    return x._mm_data, x._mm_mask
