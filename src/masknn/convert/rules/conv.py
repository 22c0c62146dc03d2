"""Convolution rules: ``F.conv*d`` and ``F.conv_transpose*d`` become partial convolutions,
and ``F.pad`` keeps track of the zeros it writes.

A converted model must equal the original on complete data, so its convolutions run
[`masknn.functional.partial_conv2d`][] (and the 1d/3d/transposed twins) with
``padding_valid=True``: zero padding counts in the window as in the plain convolution
(an all-valid window is not rescaled) but never makes an output valid (an output is
valid only when its window holds a real valid input).

Some models pad explicitly and then convolve without padding (timm's ``Conv2dSame``,
TensorFlow-style "same" padding). ``F.pad`` with zeros therefore marks the positions it
wrote (``_mm_pad`` on the carrier), and the next convolution counts them in its window
as if they were its own zero padding: the data goes through the partial convolution
with those positions counted, and its output mask is the windows that hold a real
valid input. Other padding modes (reflect, replicate, circular, as ``nn.Conv2d`` with
``padding_mode='reflect'`` does) pad the mask in the same way as the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import masknn.functional.conv as mconv
from masknn.convert import _table
from masknn.convert._carrier import carry, unsupported
from masknn.convert.rules._args import REQUIRED, bind
from masknn.convert.rules._common import one_data
from masknn.functional._select import select

__all__: list[str] = []

_CONV_F = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _window_valid(
    mask: Tensor,
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    c_out: int,
) -> Tensor:
    """Output positions of a convolution whose window holds a valid input (of its group)."""
    nd = len(kernel)
    m = mask.expand(*mask.shape[:2], *spatial)
    if m.shape[1] == 1:
        cnt, g = m.to(torch.float32), 1
    else:
        n, c = m.shape[0], m.shape[1]
        cnt, g = m.reshape(n, groups, c // groups, *spatial).sum(2, dtype=torch.float32), groups
    ones = torch.ones((g, 1, *kernel), dtype=torch.float32, device=mask.device)
    valid = _CONV_F[nd](cnt, ones, None, stride, padding, dilation, g) > 0
    return valid.repeat_interleave(c_out // g, dim=1) if g > 1 else valid


def _conv(nd: int) -> _table.Rule:
    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, w, b, stride, padding, dilation, groups = bind(
            func,
            args,
            kwargs,
            ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
            (REQUIRED, REQUIRED, None, 1, 0, 1, 1),
        )
        data, mask = one_data(func, x, (w, b))
        op = getattr(mconv, f"partial_conv{nd}d")
        pad = x._mm_pad
        if pad is None:
            out = op(data, mask, w, b, stride, padding, dilation, groups, padding_valid=True)
            return carry(out.data, out.mask)
        # After F.pad with zeros: its zeros count in the window (as the plain convolution
        # sees them) but never validate an output.
        if isinstance(padding, str):
            if padding != "valid":
                raise unsupported(func, f"padding={padding!r} after an explicit F.pad")
            padding = 0
        out = op(data, mask | pad, w, b, stride, padding, dilation, groups, padding_valid=True)
        real = _window_valid(mask, data.shape[2:], w.shape[2:], stride, padding, dilation, groups, w.shape[0])
        valid = real & out.mask
        return carry(select(out.data, valid), valid)

    return rule


def _conv_transpose(nd: int) -> _table.Rule:
    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, w, b, stride, padding, output_padding, groups, dilation = bind(
            func,
            args,
            kwargs,
            ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
            (REQUIRED, REQUIRED, None, 1, 0, 0, 1, 1),
        )
        data, mask = one_data(func, x, (w, b))
        if x._mm_pad is not None:
            raise unsupported(func, "a transposed convolution after an explicit F.pad")
        op = getattr(mconv, f"partial_conv_transpose{nd}d")
        out = op(data, mask, w, b, stride, padding, output_padding, groups, dilation, padding_valid=True)
        return carry(out.data, out.mask)

    return rule


def _pad(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x, pad, mode, value = bind(
        func, args, kwargs, ("input", "pad", "mode", "value"), (REQUIRED, REQUIRED, "constant", None)
    )
    data, mask = one_data(func, x)
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > data.dim():
        raise unsupported(func, f"pad={pad} for data with {data.dim()} dimensions")
    dims = [data.dim() - 1 - i for i in range(len(pad) // 2)]
    full = list(mask.shape)
    for d in dims:
        full[d] = data.shape[d]
    m = mask.expand(full)
    old = x._mm_pad
    if mode == "constant":
        out = F.pad(data, pad, "constant", 0.0)  # canonical zeros; the value only decides validity
        m_out = F.pad(m, pad, "constant", False)
        shape = [1] * data.dim()
        for d in dims:
            shape[d] = data.shape[d]
        new: Tensor | None = None
        if value is None or value == 0:
            new = F.pad(torch.zeros(shape, dtype=torch.bool, device=data.device), pad, "constant", True)
        if old is not None:
            old_full = list(old.shape)
            for d in dims:
                old_full[d] = data.shape[d]
            kept = F.pad(old.expand(old_full), pad, "constant", False)
            new = kept if new is None else kept | new
        return carry(out, m_out, new)
    if old is not None:
        raise unsupported(func, f"mode={mode!r} padding after a zero F.pad")
    out = F.pad(data, pad, mode)
    m_out = F.pad(m.to(data.dtype), pad, mode) > 0.5
    return carry(out, m_out)


for _nd in (1, 2, 3):
    _table.add(_table.resolve([f"conv{_nd}d"], ["torch", "torch.nn.functional"]), _conv(_nd))
    _table.add(
        _table.resolve([f"conv_transpose{_nd}d"], ["torch", "torch.nn.functional"]), _conv_transpose(_nd)
    )
_table.add(_table.resolve(["pad"], ["torch.nn.functional", "torch._C._nn"]), _pad)
