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
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from masknn._masked import Masked
from masknn._validation import shape_str
from masknn.functional._spatial import (
    IntOrSeq,
    acc_dtype,
    is_shared,
    ntuple,
    prepare,
    select_into,
    shared,
    zero,
)

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
    if weight.dtype != x.dtype or weight.device != x.device:
        raise TypeError(
            f"{op}: weight ({weight.dtype} on {weight.device}) and data ({x.dtype} on {x.device}) "
            "must share dtype and device"
        )
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


class _PartialConvFn(torch.autograd.Function):
    """The full-size part of a partial convolution as one autograd node.

    forward: ``xz = select(x, mask)`` (bitwise, exact), ``raw = conv(xz, W)``, then in
    place ``raw · scale + bias · valid``. ``raw`` is exactly 0 at empty windows (all
    their inputs are 0) and so is ``scale``: empty windows come out exactly 0 with no
    select. backward: ``g = grad · scale``, the weight gradient from ``g`` and the
    re-selected input (freed at once), the input gradient from ``g`` selected in
    place (exactly 0 at masked inputs), and the bias gradient as a batched matrix
    product ``Σ grad · valid`` (no temporary). Only ``x`` (which a plain convolution
    saves too), the mask bits and the small per-window tensors are kept between the
    passes.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        mask: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        scale: Tensor,
        valid: Tensor,
        view: tuple[int, ...],
        conv: tuple[Any, ...],
    ) -> Tensor:
        xz = select_into(x.contiguous(), mask)
        stride, padding, dilation, transposed, output_padding, groups = conv
        out = torch.ops.aten.convolution(
            xz, weight, None, stride, padding, dilation, transposed, output_padding, groups
        )
        del xz
        out = out.contiguous()
        out_v = out.view(view)
        out_v.mul_(scale)
        if bias is not None:
            out_v.addcmul_(bias.to(out.dtype).reshape((1, *view[1:-1], 1)), valid)
        # The canonical input is recomputed in the backward pass rather than kept: it is
        # needed there only for the weight gradient, and keeping it would hold one more
        # input-sized tensor from the forward to the backward pass.
        ctx.save_for_backward(x, mask, weight, scale, valid)
        ctx.view, ctx.conv, ctx.has_bias = view, conv, bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, mask, weight, scale, valid = ctx.saved_tensors
        stride, padding, dilation, transposed, output_padding, groups = ctx.conv
        g_v = grad.reshape(ctx.view)
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        grad_x = grad_w = grad_b = None
        if need_x or need_w:
            g = (g_v * scale).reshape(grad.shape)
            args = (stride, padding, dilation, transposed, output_padding, groups)
            if need_w:
                xz = select_into(x.contiguous(), mask)
                grad_w = torch.ops.aten.convolution_backward(
                    g, xz, weight, None, *args, [False, True, False]
                )[1]
                del xz  # freed before the input gradient is allocated
            if need_x:
                # The input gradient reads the input's shape only, not its values.
                grad_x = torch.ops.aten.convolution_backward(g, x, weight, None, *args, [True, False, False])[
                    0
                ]
                grad_x = grad_x.contiguous()
                select_into(grad_x, mask, out=grad_x)
        if ctx.has_bias and need_b:
            # (..., C', L) @ (..., L, 1): the sum of the gradient over valid outputs, per channel.
            per = torch.matmul(g_v, valid.transpose(-1, -2)).squeeze(-1)
            grad_b = per.sum(0).reshape(-1)
        return grad_x, None, grad_w, grad_b, None, None, None, None


def _scale_views(
    cnt: Tensor, window: Tensor | float, dtype: torch.dtype, n: int, c_out: int, spatial: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor, tuple[int, ...]]:
    """``(valid, scale view, valid view, output view)`` with the spatial dimensions flattened.

    With per-group counts the channels are viewed as ``(G, C_out/G)``.
    """
    valid = cnt > 0
    scale = torch.where(valid, window / cnt.clamp_min(1), zero(cnt)).to(dtype)
    g, nm = cnt.shape[1], cnt.shape[0]
    length = math.prod(spatial)
    if g > 1:
        view: tuple[int, ...] = (n, g, c_out // g, length)
        return valid, scale.reshape(nm, g, 1, length), valid.to(dtype).reshape(nm, g, 1, length), view
    return valid, scale.reshape(nm, 1, length), valid.to(dtype).reshape(nm, 1, length), (n, c_out, length)


def _run(
    x: Tensor,
    m: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    cnt: Tensor,
    window: Tensor | float,
    conv: tuple[Any, ...],
    out_spatial: Sequence[int],
    c_out: int,
) -> Masked:
    n = x.shape[0]
    valid, s_v, v_v, view = _scale_views(cnt, window, x.dtype, n, c_out, out_spatial)
    out = _PartialConvFn.apply(x, m, weight, bias, s_v, v_v, view, conv)
    g = cnt.shape[1]
    if g > 1:
        mask = valid.unsqueeze(2).expand(valid.shape[0], g, c_out // g, *out_spatial)
        mask = mask.reshape(valid.shape[0], c_out, *out_spatial)
    elif not is_shared(m):
        mask = valid.expand(valid.shape[0], c_out, *out_spatial)
    else:
        mask = valid
    return Masked(out.view(n, c_out, *out_spatial), mask)


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
    conv = _CONV[nd]
    flat = _flat_pad(pads)
    acc = acc_dtype(x)

    if all(lo == hi for lo, hi in pads):
        conv_pad: tuple[int, ...] = tuple(lo for lo, _ in pads)
        cnt_in, per = _group_count(m, groups, acc)
        if padding_valid and any(conv_pad):
            cnt_in, cnt_pad = F.pad(cnt_in, flat, value=float(per)), (0,) * nd
        else:
            cnt_pad = conv_pad
    else:  # asymmetric ('same' with an even kernel): pad data and mask, convolve without padding
        spatial = x.shape[2:]
        x, m = F.pad(x, flat), F.pad(m.expand(*m.shape[:2], *spatial), flat)
        conv_pad = cnt_pad = (0,) * nd
        cnt_in, per = _group_count(m, groups, acc)
        if padding_valid:  # the padded border counts as valid
            inner = torch.zeros((1, 1, *spatial), dtype=acc, device=x.device)
            cnt_in = cnt_in + F.pad(inner, flat, value=float(per))
    g = cnt_in.shape[1]
    ones = torch.ones((g, 1, *kernel), dtype=acc, device=x.device)
    cnt = conv(cnt_in, ones, None, st, cnt_pad, dil, g)
    window = float(per * math.prod(kernel))
    spec = (list(st), list(conv_pad), list(dil), False, [0] * nd, groups)
    return _run(x, m, weight, bias, cnt, window, spec, cnt.shape[2:], weight.shape[0])


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
    """1-d partial convolution of ``x`` ``(N, C_in, L)``; see
    [`partial_conv2d`][masknn.functional.partial_conv2d].

    Examples:
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

    Arguments as ``torch.nn.functional.conv2d``, plus the mask: ``(N, 1, H, W)``
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
    ``torch.nn.functional.conv2d`` when every input is valid.

    Examples:
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
    """3-d partial convolution of ``x`` ``(N, C_in, D, H, W)``; see
    [`partial_conv2d`][masknn.functional.partial_conv2d].

    Examples:
        >>> import torch
        >>> x, m = torch.ones(1, 2, 3, 3, 3), torch.ones(1, 1, 3, 3, 3)
        >>> out = partial_conv3d(x, m, torch.ones(4, 2, 3, 3, 3))
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

    acc = acc_dtype(x)
    cnt_in, per = _group_count(m, groups, acc)
    g = cnt_in.shape[1]
    ones = torch.ones((g, 1, *kernel), dtype=acc, device=x.device)
    cnt = conv_t(cnt_in, ones, None, st, pad, opad, g, dil)
    spatial_in = x.shape[2:]
    spatial_out = cnt.shape[2:]
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
    spec = (list(st), list(pad), list(dil), True, list(opad), groups)
    return _run(x, m, weight, bias, cnt, window, spec, spatial_out, weight.shape[1] * groups)


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
    """1-d partial transposed convolution; see
    [`partial_conv_transpose2d`][masknn.functional.partial_conv_transpose2d].

    Examples:
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
    """2-d partial transposed convolution (arguments as ``torch.nn.functional.conv_transpose2d``).

    ``out = conv_transpose(x⊙m) · (window / valid count) + b`` where at least one valid
    input reaches the output position, else exactly 0 with a False mask. ``window`` is
    the number of kernel taps that land on the position (it varies with the stride
    phase); taps that fall outside the input count as masked, like a partial
    convolution's zero padding. With ``padding_valid=True`` they count as valid, which
    makes the result equal to ``torch.nn.functional.conv_transpose2d`` when every
    input is valid. Masks as in [`partial_conv2d`][masknn.functional.partial_conv2d].

    Examples:
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
    """3-d partial transposed convolution; see
    [`partial_conv_transpose2d`][masknn.functional.partial_conv_transpose2d].

    Examples:
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
