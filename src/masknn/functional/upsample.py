"""Up-sampling of masked data: nearest, and normalized (bi/tri)linear or area interpolation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn.functional._spatial import acc_dtype, is_shared, prepare, shared, zero

__all__ = ["masked_interpolate"]

_NEAREST = ("nearest", "nearest-exact")
_NORMALIZED = ("linear", "bilinear", "trilinear", "area")


def masked_interpolate(
    x: Tensor,
    mask: Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> Masked:
    """Resize ``x`` ``(N, C, *spatial)`` like :func:`torch.nn.functional.interpolate`, ignoring masked inputs.

    * ``"nearest"``/``"nearest-exact"``: data and mask are resized alike;
    * ``"linear"``, ``"bilinear"``, ``"trilinear"``, ``"area"`` (normalized): the
      zero-filled data and the mask are interpolated with the same weights and
      divided, ``out = interp(x⊙m) / interp(m)``, valid where ``interp(m) > 0``.

    Modes with negative weights (``bicubic``) are refused: their normalization is
    not a weighted mean.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0]]])
        >>> out = masked_interpolate(x, ~x.isnan(), size=5, mode="linear", align_corners=True)
        >>> out.data  # the middle output lies exactly on the masked input
        tensor([[[1., 1., 0., 3., 3.]]])
        >>> out.mask
        tensor([[[ True,  True, False,  True,  True]]])
    """
    op = "masked_interpolate"
    x, m = prepare(op, x, mask, None)
    if x.dim() < 3:
        raise ValueError(f"{op}: expected data (N, C, *spatial) with at least 3 dimensions, got {x.dim()}")
    pm = shared(m) if is_shared(m) else m
    if mode in _NEAREST:
        xz = torch.where(m, x, zero(x))
        out = F.interpolate(xz, size, scale_factor, mode)
        valid = F.interpolate(pm.to(torch.uint8), size, scale_factor, mode) > 0
        return Masked(out, valid)
    if mode not in _NORMALIZED:
        raise ValueError(f"{op}: mode must be one of {_NEAREST + _NORMALIZED}, got {mode!r}")
    ac = align_corners if mode != "area" else None
    xz = torch.where(m, x, zero(x))
    num = F.interpolate(xz, size, scale_factor, mode, ac)
    den = F.interpolate(pm.to(acc_dtype(x)), size, scale_factor, mode, ac)
    valid = den > 0
    inv = torch.where(valid, 1.0 / torch.where(valid, den, torch.ones_like(den)), zero(den)).to(x.dtype)
    return Masked(num * inv, valid)
