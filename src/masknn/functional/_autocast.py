"""The output dtype of a plain torch op under the current autocast state (for matching the twin's)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["twin_dtype"]


def twin_dtype(x: Tensor, twin: Callable[[Tensor], Tensor], probe_shape: Sequence[int]) -> torch.dtype:
    """The dtype ``twin`` (the plain torch op) returns for ``x``'s dtype under the active autocast.

    Outside autocast this is ``x.dtype`` at no cost. Inside, the twin runs once on a
    tiny probe of ``probe_shape`` so that autocast's own per-device, per-op rules
    decide (e.g. ``avg_pool3d`` is cast to float32 under CPU autocast, ``avg_pool2d``
    keeps the input's dtype); masknn ops that accumulate in float32 then return what
    their twin would.
    """
    if not torch.is_autocast_enabled(x.device.type):
        return x.dtype
    with torch.no_grad():
        return twin(torch.zeros(tuple(probe_shape), dtype=x.dtype, device=x.device)).dtype
