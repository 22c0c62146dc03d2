"""The ``F.interpolate`` rule (``nn.Upsample`` calls it): masknn's masked interpolation.

``nearest``/``nearest-exact`` resize data and mask alike; ``linear``, ``bilinear``,
``trilinear`` and ``area`` are normalized (``interp(x⊙m) / interp(m)``, valid where the
weight of valid inputs is positive), which equals the plain op on complete data.
``bicubic`` and ``antialias=True`` are refused (negative weights: no masked mean).
"""

from __future__ import annotations

import math
from typing import Any

import masknn.functional.upsample as mup
from masknn.convert import _table
from masknn.convert._carrier import carry, unsupported
from masknn.convert.rules._args import REQUIRED, bind
from masknn.convert.rules._common import one_data

__all__: list[str] = []


def _interpolate(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x, size, scale, mode, align, recompute, antialias = bind(
        func,
        args,
        kwargs,
        ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"),
        (REQUIRED, None, None, "nearest", None, None, False),
    )
    if antialias:
        raise unsupported(func, "antialias=True has no masked rule")
    data, mask = one_data(func, x)
    if recompute and scale is not None:
        nd = data.dim() - 2
        scales = [float(scale)] * nd if isinstance(scale, (int, float)) else [float(s) for s in scale]
        size = [math.floor(data.shape[2 + i] * scales[i]) for i in range(nd)]
        scale = None
    out = mup.masked_interpolate(data, mask, size, scale, mode, align)
    return carry(out.data, out.mask)


_table.add(_table.resolve(["interpolate"], ["torch.nn.functional"]), _interpolate)
