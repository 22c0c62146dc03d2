"""Partial convolution (Liu et al. 2018, "Image Inpainting for Irregular Holes Using Partial
Convolutions"), 1d/2d/3d and transposed.

``out = W·(x⊙m) · (window size / valid count) + b`` where the window holds at least
one valid input, else exactly 0 with a False mask (DESIGN §4). Zero padding counts
as masked unless ``padding_valid=True``, which makes the op equal to the plain
convolution when every input is valid.

How the valid count is computed (it is what makes this op cheap):

* channel-shared mask ``(N, 1, ...)``: the count is a one-channel box filter of the
  mask (a convolution with a ones kernel of one input and one output channel), and
  the ratio is ``prod(kernel_size) / count``;
* per-channel mask ``(N, C_in, ...)`` (NVIDIA's ``multi_channel=True``): the mask is
  first summed over the input channels of each group (one channel per group), then
  box-filtered; the ratio is ``C_in/groups · prod(kernel_size) / count``.

Never a ``C_out x C_in`` ones-kernel convolution. The ratio and the output validity
are small tensors ``(N, 1 or groups, *out)``; the full-size work is one
``torch.where`` on the input, the convolution, one fused multiply-add and, with a
bias, one ``torch.where`` on the output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import shape_str
from masknn.functional._spatial import IntOrSeq, acc_dtype, is_shared, ntuple, prepare, shared, zero

__all__ = [
    "partial_conv1d",
    "partial_conv2d",
    "partial_conv3d",
    "partial_conv_transpose1d",
    "partial_conv_transpose2d",
    "partial_conv_transpose3d",
]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _padding(
    op: str,
    nd: int,
    padding: IntOrSeq | str,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return out
        raise ValueError(f"{op}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
    return [(p, p) for p in ntuple(op, "padding", padding, nd)]


def _flat_pad(pads: list[tuple[int, int]]) -> list[int]:
    # F.pad takes the last dimension first.
    flat: list[int] = []
    for lo, hi in reversed(pads):
        flat += [lo, hi]
    return flat


def _check_weight(op: str, nd: int, x: Tensor, weight: Tensor, groups: int, transposed: bool) -> None:
    if not isinstance(weight, Tensor) or weight.dim() != nd + 2:
        got = shape_str(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{op}: expected a {nd + 2}-d weight, got {got}")
    c_in = x.shape[1]
    expected = weight.shape[0] if transposed else weight.shape[1] * groups
    if groups < 1 or c_in % groups or c_in != expected:
        raise ValueError(
            f"{op}: data shape {shape_str(x.shape)} has {c_in} channels, but weight shape "
            f"{shape_str(weight.shape)} with groups={groups} expects {expected}"
        )


def _group_count(m: Tensor, groups: int, dtype: torch.dtype) -> tuple[Tensor, int]:
    """Valid inputs per position, summed over the input channels of each group.

    Returns ``(count (N, 1 or groups, *spatial), channels per count)``.
    """
    if is_shared(m):
        return shared(m).to(dtype), 1
    n, c = m.shape[0], m.shape[1]
    if groups == 1:
        return m.sum(1, keepdim=True, dtype=dtype), c
    return m.reshape(n, groups, c // groups, *m.shape[2:]).sum(2, dtype=dtype), c // groups


def _finish(
    out: Tensor,
    cnt: Tensor,
    window: Tensor | float,
    bias: Tensor | None,
    per_channel: bool,
    c_out: int,
) -> Masked:
    """Rescale ``out`` by ``window / cnt``, add the bias, zero the empty windows."""
    valid = cnt > 0
    scale = torch.where(valid, window / cnt.clamp_min(1), zero(cnt)).to(out.dtype)
    g = cnt.shape[1]
    n, spatial = out.shape[0], out.shape[2:]
    if g > 1:  # per-group counts: view the output as (N, G, C_out/G, *out)
        out = out.reshape(n, g, c_out // g, *spatial)
        scale, valid = scale.unsqueeze(2), valid.unsqueeze(2)
    if bias is None:
        # The raw output of an empty window is exactly 0 (all its inputs are 0), and so is its scale.
        out = out * scale
    else:
        b = bias.to(out.dtype).reshape((1, *out.shape[1 : -len(spatial)]) + (1,) * len(spatial))
        out = torch.where(valid, torch.addcmul(b, out, scale), zero(out))
    if g > 1:
        out = out.reshape(n, c_out, *spatial)
        mask = valid.expand(valid.shape[0], g, c_out // g, *spatial).reshape(valid.shape[0], c_out, *spatial)
    elif per_channel:
        mask = valid.expand(valid.shape[0], c_out, *spatial)
    else:
        mask = valid
    return Masked(out, mask)


def _partial_conv(
    op: str,
    nd: int,
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrSeq,
    padding: IntOrSeq | str,
    dilation: IntOrSeq,
    groups: int,
    padding_valid: bool,
) -> Masked:
    x, m = prepare(op, x, mask, nd)
    _check_weight(op, nd, x, weight, groups, transposed=False)
    kernel = tuple(weight.shape[2:])
    st = ntuple(op, "stride", stride, nd)
    dil = ntuple(op, "dilation", dilation, nd)
    pads = _padding(op, nd, padding, kernel, st, dil)
    symmetric = all(lo == hi for lo, hi in pads)
    conv = _CONV[nd]

    xz = torch.where(m, x, zero(x))
    if symmetric:
        conv_pad: tuple[int, ...] = tuple(lo for lo, _ in pads)
    else:
        xz = F.pad(xz, _flat_pad(pads))
        conv_pad = (0,) * nd
    out = conv(xz, weight, None, st, conv_pad, dil, groups)

    cnt_in, per = _group_count(m, groups, acc_dtype(x))
    g = cnt_in.shape[1]
    ones = torch.ones((g, 1, *kernel), dtype=cnt_in.dtype, device=x.device)
    if padding_valid or not symmetric:
        if any(lo or hi for lo, hi in pads):
            cnt_in = F.pad(cnt_in, _flat_pad(pads), value=float(per) if padding_valid else 0.0)
        cnt = conv(cnt_in, ones, None, st, 0, dil, g)
    else:
        cnt = conv(cnt_in, ones, None, st, conv_pad, dil, g)
    window = float(per * math.prod(kernel))
    return _finish(out, cnt, window, bias, not is_shared(m), weight.shape[0])


def partial_conv1d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq | str = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    padding_valid: bool = False,
) -> Masked:
    """1-d partial convolution of ``x`` ``(N, C_in, L)``; see :func:`partial_conv2d`.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[1.0, float("nan"), 3.0, 4.0]]])
        >>> out = partial_conv1d(x, ~x.isnan(), torch.ones(1, 1, 2))
        >>> out.data  # windows [1, nan], [nan, 3], [3, 4] rescaled by 2 / valid count
        tensor([[[2., 6., 7.]]])
        >>> out.mask
        tensor([[[True, True, True]]])
    """
    return _partial_conv(
        "partial_conv1d", 1, x, mask, weight, bias, stride, padding, dilation, groups, padding_valid
    )


def partial_conv2d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq | str = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    padding_valid: bool = False,
) -> Masked:
    """2-d partial convolution (Liu et al. 2018) of ``x`` ``(N, C_in, H, W)``.

    Arguments as :func:`torch.nn.functional.conv2d`, plus the mask: ``(N, 1, H, W)``
    (shared by all channels) or ``(N, C_in, H, W)`` (per channel; the valid count then
    runs over the input channels of each group, NVIDIA's ``multi_channel=True``);
    size-1 batch or spatial dimensions broadcast. ``padding`` may be ``'same'`` or
    ``'valid'``.

    Returns ``Masked(out, out_mask)``: ``out = W·(x⊙m)·(window size / valid count) + b``
    where the window holds at least one valid input, exactly 0 elsewhere. ``out_mask``
    is ``(N, 1, H_out, W_out)`` for a channel-shared mask and ``(N, C_out, H_out, W_out)``
    for a per-channel mask (an expanded view when the groups are 1).

    Zero padding counts as masked (border windows are re-weighted); with
    ``padding_valid=True`` it counts as valid, which makes the result equal to
    :func:`torch.nn.functional.conv2d` when every input is valid.

    Example:
        >>> import torch
        >>> x = torch.ones(1, 1, 3, 3)
        >>> m = torch.tensor([[[[1, 1, 0], [1, 1, 0], [0, 0, 0]]]], dtype=torch.bool)
        >>> out = partial_conv2d(x, m, torch.ones(1, 1, 3, 3), padding=1)
        >>> out.data  # every window with a valid input gives 9 · mean of its valid inputs
        tensor([[[[9., 9., 9.],
                  [9., 9., 9.],
                  [9., 9., 9.]]]])
        >>> out2 = partial_conv2d(x, m, torch.ones(1, 1, 3, 3))  # no padding: 1 window
        >>> out2.data, out2.mask
        (tensor([[[[9.]]]]), tensor([[[[True]]]]))
    """
    return _partial_conv(
        "partial_conv2d", 2, x, mask, weight, bias, stride, padding, dilation, groups, padding_valid
    )


def partial_conv3d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq | str = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    padding_valid: bool = False,
) -> Masked:
    """3-d partial convolution of ``x`` ``(N, C_in, D, H, W)``; see :func:`partial_conv2d`.

    Example:
        >>> import torch
        >>> out = partial_conv3d(torch.ones(1, 2, 3, 3, 3), torch.ones(1, 1, 3, 3, 3), torch.ones(4, 2, 3, 3, 3))
        >>> out.data.shape, out.mask.shape
        (torch.Size([1, 4, 1, 1, 1]), torch.Size([1, 1, 1, 1, 1]))
    """
    return _partial_conv(
        "partial_conv3d", 3, x, mask, weight, bias, stride, padding, dilation, groups, padding_valid
    )


def _phase_window(
    in_size: int, out_size: int, k: int, s: int, p: int, d: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Per output position of a transposed convolution: the kernel taps that land on it.

    Counted as if the input extended without end (out-of-range inputs are the
    transposed op's "padding"), so border positions are re-weighted like a partial
    convolution's.
    """
    o = torch.arange(out_size, device=device).unsqueeze(1)
    taps = torch.arange(k, device=device).unsqueeze(0)
    return ((o + p - taps * d) % s == 0).sum(1).to(dtype)


def _partial_conv_transpose(
    op: str,
    nd: int,
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrSeq,
    padding: IntOrSeq,
    output_padding: IntOrSeq,
    groups: int,
    dilation: IntOrSeq,
    padding_valid: bool,
) -> Masked:
    x, m = prepare(op, x, mask, nd)
    _check_weight(op, nd, x, weight, groups, transposed=True)
    kernel = tuple(weight.shape[2:])
    st = ntuple(op, "stride", stride, nd)
    pad = ntuple(op, "padding", padding, nd)
    opad = ntuple(op, "output_padding", output_padding, nd)
    dil = ntuple(op, "dilation", dilation, nd)
    conv_t = _CONV_T[nd]

    xz = torch.where(m, x, zero(x))
    out = conv_t(xz, weight, None, st, pad, opad, groups, dil)

    acc = acc_dtype(x)
    cnt_in, per = _group_count(m, groups, acc)
    g = cnt_in.shape[1]
    ones = torch.ones((g, 1, *kernel), dtype=acc, device=x.device)
    cnt = conv_t(cnt_in, ones, None, st, pad, opad, g, dil)
    spatial_in, spatial_out = x.shape[2:], out.shape[2:]
    if padding_valid:
        full = torch.full((1, 1, *spatial_in), float(per), dtype=acc, device=x.device)
        one = torch.ones((1, 1, *kernel), dtype=acc, device=x.device)
        window: Tensor = conv_t(full, one, None, st, pad, opad, 1, dil)
    else:
        window = torch.full((1, 1) + (1,) * nd, float(per), dtype=acc, device=x.device)
        for i in range(nd):
            w = _phase_window(spatial_in[i], spatial_out[i], kernel[i], st[i], pad[i], dil[i], acc, x.device)
            shape = [1] * (nd + 2)
            shape[2 + i] = -1
            window = window * w.reshape(shape)
    return _finish(out, cnt, window, bias, not is_shared(m), weight.shape[1] * groups)


def partial_conv_transpose1d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    dilation: IntOrSeq = 1,
    padding_valid: bool = False,
) -> Masked:
    """1-d partial transposed convolution; see :func:`partial_conv_transpose2d`.

    Example:
        >>> import torch
        >>> out = partial_conv_transpose1d(torch.ones(1, 1, 2), torch.tensor([[[True, False]]]),
        ...                                torch.ones(1, 1, 2), stride=2)
        >>> out.data, out.mask
        (tensor([[[1., 1., 0., 0.]]]), tensor([[[ True,  True, False, False]]]))
    """
    return _partial_conv_transpose(
        "partial_conv_transpose1d",
        1,
        x,
        mask,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        padding_valid,
    )


def partial_conv_transpose2d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    dilation: IntOrSeq = 1,
    padding_valid: bool = False,
) -> Masked:
    """2-d partial transposed convolution (arguments as :func:`torch.nn.functional.conv_transpose2d`).

    ``out = conv_transpose(x⊙m) · (window / valid count) + b`` where at least one valid
    input reaches the output position, else exactly 0 with a False mask. ``window`` is
    the number of kernel taps that land on the position (it varies with the stride
    phase); taps that fall outside the input count as masked, like a partial
    convolution's zero padding. With ``padding_valid=True`` they count as valid, which
    makes the result equal to :func:`torch.nn.functional.conv_transpose2d` when every
    input is valid. Masks as in :func:`partial_conv2d`.

    Example:
        >>> import torch
        >>> x = torch.ones(1, 1, 2, 2)
        >>> m = torch.tensor([[[[True, False], [False, False]]]])
        >>> out = partial_conv_transpose2d(x, m, torch.ones(1, 1, 2, 2), stride=2)
        >>> out.mask.int()
        tensor([[[[1, 1, 0, 0],
                  [1, 1, 0, 0],
                  [0, 0, 0, 0],
                  [0, 0, 0, 0]]]], dtype=torch.int32)
    """
    return _partial_conv_transpose(
        "partial_conv_transpose2d",
        2,
        x,
        mask,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        padding_valid,
    )


def partial_conv_transpose3d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    dilation: IntOrSeq = 1,
    padding_valid: bool = False,
) -> Masked:
    """3-d partial transposed convolution; see :func:`partial_conv_transpose2d`.

    Example:
        >>> import torch
        >>> out = partial_conv_transpose3d(torch.ones(1, 2, 2, 2, 2), torch.ones(1, 1, 2, 2, 2),
        ...                                torch.ones(2, 3, 2, 2, 2), stride=2)
        >>> out.data.shape, bool(out.mask.all())
        (torch.Size([1, 3, 4, 4, 4]), True)
    """
    return _partial_conv_transpose(
        "partial_conv_transpose3d",
        3,
        x,
        mask,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        padding_valid,
    )
