"""Up-sampling of masked data: nearest, and normalized (bi/tri)linear or area interpolation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import shape_str
from masknn.functional._autocast import twin_dtype
from masknn.functional._layout import follow_layout
from masknn.functional._scale_select import scale_select
from masknn.functional._spatial import acc_dtype, is_shared, prepare, select, shared

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
    """Resize ``x`` ``(N, C, *spatial)`` like ``torch.nn.functional.interpolate``, ignoring masked inputs.

    * ``"nearest"``/``"nearest-exact"``: data and mask are resized alike;
    * ``"linear"``, ``"bilinear"``, ``"trilinear"``, ``"area"`` (normalized): the
      zero-filled data and the mask are interpolated with the same weights and
      divided, ``out = interp(x⊙m) / interp(m)``, valid where ``interp(m) > 0``.

    Modes with negative weights (``bicubic``) are refused: their normalization is
    not a weighted mean.

    Where an output coincides with a masked input (e.g. ``align_corners=True``, or
    ``scale_factor=3``), the valid neighbours' weights are 0 only up to the rounding of
    the source coordinate: eager CPU kernels may give them about 1e-8 (the output is
    then valid, with the neighbours' mean) where a compiled graph computes exactly 0
    (invalid). Both are the definition up to rounding; scale factors 2 and 4 have no
    such outputs.

    Examples:
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
    m = follow_layout(m, x)
    need = {"linear": 3, "bilinear": 4, "trilinear": 5}.get(mode)
    if x.dim() not in (3, 4, 5) or (need is not None and x.dim() != need):
        expected = f"{need}-d" if need is not None else "3-d, 4-d or 5-d"
        raise ValueError(
            f"{op}: expected {expected} data (N, C, *spatial) for mode={mode!r}, "
            f"got shape {shape_str(x.shape)}"
        )
    for name, arg in (("size", size), ("scale_factor", scale_factor)):
        if isinstance(arg, Sequence) and len(arg) != x.dim() - 2:
            raise ValueError(
                f"{op}: {name} {tuple(arg)} has {len(arg)} entries, but data shape {shape_str(x.shape)} "
                f"has {x.dim() - 2} spatial dimensions"
            )
    pm = shared(m) if is_shared(m) else m
    if mode in _NEAREST:
        # Each output copies one input: a masked input gives exactly 0 and an invalid output,
        # and the gradient of an invalid output reaches only its (masked, selected) input.
        out = F.interpolate(select(x, m), size, scale_factor, mode)
        valid = F.interpolate(pm.to(torch.uint8), size, scale_factor, mode) > 0
        return Masked(out, valid)
    if mode not in _NORMALIZED:
        raise ValueError(f"{op}: mode must be one of {_NEAREST + _NORMALIZED}, got {mode!r}")
    ac = align_corners if mode != "area" else None
    acc = acc_dtype(x)
    # Numerator and division in the accumulation dtype: where the interpolation weight of
    # the valid inputs is tiny (large scale factors), a float16 numerator underflows and
    # 1 / weight overflows (Inf, or far-off values), a bfloat16 one rounds to 0.
    num = F.interpolate(select(x, m).to(acc), size, scale_factor, mode, ac)
    den = F.interpolate(pm.to(acc), size, scale_factor, mode, ac)
    valid = den > 0
    # Selected, never multiplied by the mask: the interpolation backward multiplies the
    # gradient of every output by each input's weight, 0 included (NaN * 0 = NaN), so a
    # NaN or Inf gradient at an invalid output must be replaced by 0 before it.
    out = scale_select(num, 1.0 / torch.where(valid, den, torch.ones_like(den)), valid)
    probe = (1, 1) + (2,) * (x.dim() - 2)
    return Masked(out.to(twin_dtype(x, lambda t: F.interpolate(t, probe[2:], None, mode, ac), probe)), valid)
