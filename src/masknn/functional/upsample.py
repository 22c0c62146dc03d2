"""Up-sampling of masked data: nearest, and normalized (bi/tri)linear or area interpolation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_int, check_number, shape_str
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
    return interpolate("masked_interpolate", x, mask, size, scale_factor, mode, align_corners)


def check_resize_args(
    op: str,
    size: object,
    scale_factor: object,
    mode: object,
    align_corners: object,
) -> None:
    """The arguments of an interpolation, checked as ``F.interpolate`` checks them (with errors
    naming ``op``): a known mode, exactly one of ``size`` (ints >= 1) and ``scale_factor``
    (numbers > 0), and ``align_corners`` only with the linear modes."""
    if mode not in _NEAREST + _NORMALIZED:
        raise ValueError(
            f"{op}: mode must be one of {_NEAREST + _NORMALIZED}, got {mode!r} (modes with negative "
            "weights, such as 'bicubic', have no normalized form)"
        )
    if (size is None) == (scale_factor is None):
        raise ValueError(
            f"{op}: expected exactly one of size and scale_factor, got size={size!r}, "
            f"scale_factor={scale_factor!r}"
        )
    if size is not None:
        for v in size if isinstance(size, Sequence) else (size,):
            check_int(op, "size", v, 1)
    if scale_factor is not None:
        for f in scale_factor if isinstance(scale_factor, Sequence) else (scale_factor,):
            check_number(op, "scale_factor", f, 0.0, low_open=True)
    if align_corners is not None and mode not in ("linear", "bilinear", "trilinear"):
        raise ValueError(
            f"{op}: align_corners can only be set with the linear modes (linear, bilinear, trilinear), "
            f"got mode={mode!r}"
        )


def interpolate(
    op: str,
    x: Tensor,
    mask: Tensor,
    size: int | Sequence[int] | None,
    scale_factor: float | Sequence[float] | None,
    mode: str,
    align_corners: bool | None,
) -> Masked:
    """``masked_interpolate`` with errors naming ``op``."""
    x, m = prepare(op, x, mask, None)
    m = follow_layout(m, x)
    check_resize_args(op, size, scale_factor, mode, align_corners)
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
    _check_output(op, x, size, scale_factor, mode)
    pm = shared(m) if is_shared(m) else m
    if mode in _NEAREST:
        # Each output copies one input: a masked input gives exactly 0 and an invalid output,
        # and the gradient of an invalid output reaches only its (masked, selected) input.
        out = F.interpolate(select(x, m), size, scale_factor, mode)
        valid = F.interpolate(pm.to(torch.uint8), size, scale_factor, mode) > 0
        return Masked(out, valid)
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


def _check_output(op: str, x: Tensor, size: object, scale_factor: object, mode: str) -> None:
    """Every input and output spatial size at least 1, and channels unless ``mode`` is "area", as
    torch requires (concrete sizes only)."""
    spatial = tuple(x.shape[2:])
    if not all(isinstance(v, int) for v in spatial):
        return
    k = len(spatial)
    out: tuple[int, ...]
    if size is not None:  # ints (check_resize_args)
        out = tuple(cast("Sequence[int]", size)) if isinstance(size, Sequence) else (cast(int, size),) * k
    else:
        sf = cast(
            "Sequence[float]", scale_factor if isinstance(scale_factor, Sequence) else (scale_factor,) * k
        )
        out = tuple(math.floor(n * float(f)) for n, f in zip(spatial, sf))
    no_channel = mode != "area" and isinstance(x.shape[1], int) and x.shape[1] == 0
    if any(v < 1 for v in (*spatial, *out)) or no_channel:
        raise ValueError(
            f"{op}: expected non-empty channel and spatial dimensions in and out (only the batch may be "
            f"empty), got data shape {shape_str(x.shape)} and output spatial size {tuple(out)} (torch "
            "raises RuntimeError: Input and output sizes should be greater than 0)"
        )
