"""Partial convolution (Liu et al. 2018, "Image Inpainting for Irregular Holes Using Partial
Convolutions"), 1d/2d/3d and transposed.

``out = W·(x⊙m) · (window / present) + b`` at valid outputs, exactly 0 with a False mask
elsewhere (DESIGN §4). ``window`` is the number of kernel taps of the output position
(times the input channels of a group for per-channel masks), ``present`` the number of
those taps that are counted as present:

* ``padding_valid=False`` (default): only valid inputs are present. Zero padding counts as
  masked, so border windows are re-weighted like holes. An output is valid when its window
  holds at least one valid input.
* ``padding_valid=True``: valid inputs *and zero padding* are present, so the rescale is 1
  wherever no real input is masked and an all-valid input gives exactly the plain
  convolution. Padding never makes an output valid: an output is valid when its window
  holds at least one valid input. The one exception keeps the plain op's all-valid result:
  an output whose window reaches *no input position at all* (only padding; for transposed
  convolutions also the stride and dilation gaps and the ``output_padding`` rows that no
  kernel tap reaches) is the bias alone, as in the plain op, and it is valid when the
  sample holds at least one valid input in the channels the output reads (so a fully
  masked sample still gives zeros and an all-False mask).

For transposed convolutions the same rule is read on the equivalent direct convolution:
the window of an output position holds the kernel taps of its stride phase (taps that the
zero insertion of the stride skips are not part of it); those that land outside the input
are the padding.

Two implementations of one function, chosen by ``masknn.functional._select.fast_path``:

* the **composable path**: plain differentiable ops (``select``, ``F.convNd`` /
  ``F.conv_transposeNd``, one ``addcmul`` for rescale and bias, ``select`` by the output
  mask). Used under ``torch.compile`` (dynamic shapes), ``torch.export``, ONNX, ``torch.func``
  transforms, on other devices, and in eager mode for asymmetric padding;
* the **eager CPU fast path**: one autograd node that selects the input bit by bit, convolves
  and rescales in place; its backward selects the incoming gradient by the output mask
  (NaN/Inf cotangents at masked outputs never reach a gradient), rescales it in place, and
  selects the input gradient by the input mask. When a graph of the backward is asked for
  (double backward) or the gradient is batched, the backward re-runs the composable path
  instead (``differentiable_backward``).

Under ``torch.autocast`` the convolution runs in the autocast dtype exactly as ``nn.Conv2d``
does (data, weight and bias are cast; float64 is left alone); the valid counts and the
rescale are computed in float32 (float64 for float64 data) and then applied in that dtype.

How the valid count is computed (it is what makes this op cheap):

* channel-shared mask ``(N, 1, ...)``: the count is a one-channel box filter of the mask
  (a convolution with a ones kernel of one input and one output channel);
* per-channel mask ``(N, C_in, ...)`` (NVIDIA's ``multi_channel=True``): the mask is first
  summed over the input channels of each group (one channel per group), then box-filtered.

Never a ``C_out x C_in`` ones-kernel convolution. The counts, the rescale and the output
validity are small tensors ``(N, 1 or groups, *out)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import shape_str
from masknn.functional._select import differentiable_backward, fast_path
from masknn.functional._spatial import (
    IntOrSeq,
    acc_dtype,
    is_shared,
    ntuple,
    prepare,
    select,
    select_into,
    shared,
)

__all__ = [
    "partial_conv1d",
    "partial_conv2d",
    "partial_conv3d",
    "partial_conv_transpose1d",
    "partial_conv_transpose2d",
    "partial_conv_transpose3d",
]

_CONV_BACKWARD = torch.ops.aten.convolution_backward.default
#: Inputs up to this many elements get both convolution gradients from one call.
_ONE_CALL = 1 << 16
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

#: ``padding`` of the direct convolutions: an int, one int per dimension, ``'same'``,
#: ``'valid'``, or one ``(before, after)`` pair per dimension.
Padding = IntOrSeq | str | Sequence[Sequence[int]]


# --------------------------------------------------------------------------- arguments
def _positive(op: str, name: str, values: tuple[int, ...]) -> tuple[int, ...]:
    if any(v < 1 for v in values):
        raise ValueError(f"{op}: expected {name} >= 1 in every dimension, got {values}")
    return values


def _padding(
    op: str,
    nd: int,
    padding: Padding,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """``padding`` as one ``(before, after)`` pair per spatial dimension."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        raise ValueError(
            f"{op}: padding must be an int, a tuple, 'valid' or 'same', or one (before, after) pair "
            f"per dimension, got {padding!r}"
        )
    if isinstance(padding, int):
        pairs: tuple[tuple[int, int], ...] = ((padding, padding),) * nd
    elif isinstance(padding, tuple) and all(type(p) is int for p in padding):  # the Modules' form
        pairs = tuple((p, p) for p in ntuple(op, "padding", padding, nd))
    elif all(isinstance(p, Sequence) for p in padding):
        seq = cast("Sequence[Sequence[int]]", padding)
        if len(seq) != nd or any(len(p) != 2 for p in seq):
            raise ValueError(
                f"{op}: expected padding as one (before, after) pair per spatial dimension ({nd}), "
                f"got {tuple(tuple(p) for p in seq)}"
            )
        pairs = tuple((int(p[0]), int(p[1])) for p in seq)
    else:
        pairs = tuple((p, p) for p in ntuple(op, "padding", cast("Sequence[int]", padding), nd))
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(f"{op}: padding must be >= 0, got {pairs}")
    return pairs


def _flat_pad(pads: Sequence[tuple[int, int]]) -> list[int]:
    # F.pad takes the last dimension first.
    flat: list[int] = []
    for lo, hi in reversed(pads):
        flat += [lo, hi]
    return flat


def _check_params(
    op: str, nd: int, x: Tensor, weight: object, bias: object, groups: int, transposed: bool
) -> tuple[Tensor, Tensor | None]:
    if not isinstance(weight, Tensor) or weight.dim() != nd + 2:
        got = shape_str(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{op}: expected a {nd + 2}-d weight, got {got}")
    if weight.dtype != x.dtype or weight.device != x.device:
        raise TypeError(
            f"{op}: weight ({weight.dtype} on {weight.device}) and data ({x.dtype} on {x.device}) "
            "must share dtype and device"
        )
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: expected groups as a positive int, got {groups!r}")
    c_in = x.shape[1]
    expected = weight.shape[0] if transposed else weight.shape[1] * groups
    if c_in % groups or c_in != expected:
        raise ValueError(
            f"{op}: data shape {shape_str(x.shape)} has {c_in} channels, but weight shape "
            f"{shape_str(weight.shape)} with groups={groups} expects {expected}"
        )
    if transposed and weight.shape[0] % groups:
        raise ValueError(f"{op}: weight shape {shape_str(weight.shape)} does not split into groups={groups}")
    c_out = weight.shape[1] * groups if transposed else weight.shape[0]
    if bias is not None:
        if not isinstance(bias, Tensor) or bias.dim() != 1 or bias.shape[0] != c_out:
            got = shape_str(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
            raise ValueError(f"{op}: expected bias of shape ({c_out},), got {got}")
        if bias.dtype != weight.dtype or bias.device != weight.device:
            raise TypeError(
                f"{op}: bias ({bias.dtype} on {bias.device}) and weight ({weight.dtype} on "
                f"{weight.device}) must share dtype and device"
            )
    return weight, bias


def _check_sizes(op: str, spatial: Sequence[Any], out: Sequence[Any]) -> None:
    # Only with concrete sizes: under dynamic shapes torch's own shape checks apply.
    if all(isinstance(s, int) for s in (*spatial, *out)) and (
        any(s < 1 for s in spatial) or any(o < 1 for o in out)
    ):
        raise ValueError(
            f"{op}: the input's spatial size {tuple(spatial)} gives an output of size {tuple(out)} "
            "(the kernel with its dilation is larger than the padded input, or a dimension is empty)"
        )


def _autocast(x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None, bool]:
    """Cast as autocast casts a convolution's arguments (float64 stays); ``True`` when enabled."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return x, weight, bias, False
    dt = torch.get_autocast_dtype(dev)

    def cast(t: Tensor) -> Tensor:
        return t.to(dt) if t.is_floating_point() and t.dtype not in (dt, torch.float64) else t

    return cast(x), cast(weight), (None if bias is None else cast(bias)), True


# --------------------------------------------------------------------------- counts
@functools.lru_cache(maxsize=64)
def _cached_ones(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.ones(shape, dtype=dtype, device=device)


class _Spec(NamedTuple):
    """Static description of the convolution (hashable, no tensors)."""

    nd: int
    transposed: bool
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    groups: int
    pre_pad: tuple[int, ...] | None  # F.pad of the selected input (asymmetric padding)


def _box_eager(c: Tensor, kernel: tuple[int, ...], spec: _Spec) -> Tensor:
    """Eager CPU: the window sums of each channel of ``c`` ``(N, G, *spatial)``.

    Runs torch's reference CPU kernels (im2col and a matrix product) on one channel at a
    time (the channels folded into the batch): 3-6x faster than oneDNN for a one-channel
    convolution, and exact for counts like every float sum of small integers.
    """
    n, g = c.shape[0], c.shape[1]
    if g > 1:
        c = c.reshape(n * g, 1, *c.shape[2:])
    st, pad, dil, opad = spec.stride, spec.padding, spec.dilation, spec.output_padding
    if spec.nd == 1:  # as 2-d with a unit height
        c, kernel = c.unsqueeze(2), (1, *kernel)
        st, pad, dil, opad = (1, *st), (0, *pad), (1, *dil), (0, *opad)
    ones = _cached_ones((1, 1, *kernel), c.dtype, c.device)
    two = len(kernel) == 2
    nn_: Any = torch._C._nn  # the reference kernels (not in the type stubs)
    if spec.transposed:
        f_t = nn_.slow_conv_transpose2d if two else nn_.slow_conv_transpose3d
        out = f_t(c, ones, kernel, None, st, pad, opad, dil)
    elif any(d != 1 for d in dil):
        f_d = nn_.slow_conv_dilated2d if two else nn_.slow_conv_dilated3d
        out = f_d(c, ones, kernel, None, st, pad, dil)
    else:
        f = nn_.thnn_conv2d if two else nn_.slow_conv3d
        out = f(c, ones, kernel, None, st, pad)
    if spec.nd == 1:
        out = out.squeeze(2)
    return out.reshape(n, g, *out.shape[2:]) if g > 1 else out


def _box(c: Tensor, kernel: tuple[int, ...], spec: _Spec) -> Tensor:
    """The window sums of each channel of ``c`` ``(N, G, *spatial)`` in plain ops (composable)."""
    g = c.shape[1]
    ones = torch.ones((g, 1, *kernel), dtype=c.dtype, device=c.device)
    if spec.transposed:
        return _CONV_T[spec.nd](
            c, ones, None, spec.stride, spec.padding, spec.output_padding, g, spec.dilation
        )
    return _CONV[spec.nd](c, ones, None, spec.stride, spec.padding, spec.dilation, g)


class _Geometry(NamedTuple):
    """Shape-derived terms of the rescale (independent of the mask's values)."""

    window: Tensor | float  # taps in the window: a number (a 0-d tensor in eager) or (1, 1, *out)
    pad: Tensor | None  # padded taps counted as present (padding_valid), (1, 1, *out)
    empty: Tensor | None  # windows that reach no input position (padding_valid), (1, 1, *out)


def _geometry(
    spec: _Spec,
    kernel: tuple[int, ...],
    per: int,
    spatial: tuple[Any, ...],
    padding_valid: bool,
    dtype: torch.dtype,
    device: torch.device,
    eager: bool,
) -> _Geometry:
    if not spec.transposed and not padding_valid:
        window = float(per * math.prod(kernel))
        return _Geometry(_cached_scalar(window, dtype, device) if eager else window, None, None)
    if eager:
        return _cached_geometry(spec, kernel, per, spatial, padding_valid, dtype, device)
    return _build_geometry(spec, kernel, per, spatial, padding_valid, dtype, device, False)


@functools.lru_cache(maxsize=64)
def _cached_scalar(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


@functools.lru_cache(maxsize=128)
def _cached_geometry(
    spec: _Spec,
    kernel: tuple[int, ...],
    per: int,
    spatial: tuple[int, ...],
    padding_valid: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> _Geometry:
    return _build_geometry(spec, kernel, per, spatial, padding_valid, dtype, device, True)


def _build_geometry(
    spec: _Spec,
    kernel: tuple[int, ...],
    per: int,
    spatial: tuple[Any, ...],
    padding_valid: bool,
    dtype: torch.dtype,
    device: torch.device,
    eager: bool,
) -> _Geometry:
    """The window and padding terms, as box filters of ones (not per-dimension outer products:
    every term is a convolution's output, which keeps inductor's stride logic decidable under
    dynamic shapes).

    ``real`` counts the taps that read an input position (box filter of ones over the input).
    Direct convolution: the window is every tap. Transposed: the window is the taps of the
    output's stride phase, counted as if the input extended without end (a box filter of
    ones over an input extended by ``e`` positions per side, with the padding shifted by
    ``e·stride`` so that the output positions stay the same).
    """
    box = _box_eager if eager else _box
    ones = torch.ones((1, 1, *spatial), dtype=dtype, device=device)
    window: Tensor | float
    if spec.transposed:
        ext = tuple(
            (d * (k - 1) + o) // s + 1
            for k, s, d, o in zip(kernel, spec.stride, spec.dilation, spec.output_padding)
        )
        big = torch.ones((1, 1, *(n + 2 * e for n, e in zip(spatial, ext))), dtype=dtype, device=device)
        shifted = spec._replace(padding=tuple(p + e * s for p, e, s in zip(spec.padding, ext, spec.stride)))
        window = box(big, kernel, shifted) * per
    else:
        window = float(per * math.prod(kernel))
    if not padding_valid:
        return _Geometry(window, None, None)
    real = box(ones if spec.pre_pad is None else F.pad(ones, spec.pre_pad), kernel, spec) * per
    empty = real == 0
    # Eager callers drop the term when no window is empty (known from the shapes alone).
    return _Geometry(window, window - real, empty if not eager or bool(empty.any()) else None)


def _rescale(cnt: Tensor, cnt_in: Tensor, geo: _Geometry, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(scale in dtype, valid)`` from the valid counts ``(N, G, *out)``."""
    valid = cnt > 0
    # The scale only matters where the output is valid: elsewhere the convolution of the
    # selected input is exactly 0 and the output and its gradient are selected, so a zero
    # count is clamped to 1 (a finite scale, no ``where`` with a constant: see
    # ``_select.fill_value`` for what a shared constant costs under torch.compile).
    if geo.pad is None:
        c1 = cnt.clamp_min(1)
        scale = torch.div(geo.window, c1) if isinstance(geo.window, Tensor) else geo.window / c1
    else:
        if geo.empty is not None:
            # A window that reaches no input is the bias alone: valid when the sample has a valid input.
            any_valid = cnt_in.amax(tuple(range(2, cnt_in.dim())), keepdim=True) > 0
            valid = valid | (geo.empty & any_valid)
        scale = geo.window / (cnt + geo.pad).clamp_min(1)
    return (scale if scale.dtype == dtype else scale.to(dtype)), valid


def _grouped(t: Tensor, gc: int) -> Tensor:
    """``(N, C, *out)`` viewed as ``(N, G, C/G, *out)`` when the counts are per group."""
    return t.unflatten(1, (gc, -1)) if gc > 1 else t


def _small(t: Tensor, gc: int) -> Tensor:
    """A per-group ``(N, G, *out)`` tensor viewed to broadcast against ``_grouped``."""
    return t.unsqueeze(2) if gc > 1 else t


def _bias_view(bias: Tensor, gc: int, nd: int) -> Tensor:
    return bias.reshape((1, gc, -1) + (1,) * nd) if gc > 1 else bias.reshape((1, -1) + (1,) * nd)


def _composite(
    x: Tensor, m: Tensor, weight: Tensor, bias: Tensor | None, scale: Tensor, valid: Tensor, spec: _Spec
) -> Tensor:
    """The partial convolution in plain differentiable ops (the composable path)."""
    xz = select(x, m)
    if spec.pre_pad is not None:
        xz = F.pad(xz, spec.pre_pad)
    if spec.transposed:
        raw = _CONV_T[spec.nd](
            xz, weight, None, spec.stride, spec.padding, spec.output_padding, spec.groups, spec.dilation
        )
    else:
        raw = _CONV[spec.nd](xz, weight, None, spec.stride, spec.padding, spec.dilation, spec.groups)
    gc = scale.shape[1]
    raw_g, scale_g = _grouped(raw, gc), _small(scale, gc)
    out = raw_g * scale_g if bias is None else torch.addcmul(_bias_view(bias, gc, spec.nd), raw_g, scale_g)
    out = select(out, _small(valid, gc))  # the gradient is selected too: masked cotangents stay out
    if gc > 1:
        out = out.flatten(1, 2)
    # A select orders the dimensions like its (per-channel) mask: keep channels-last data channels-last.
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if fmt is not None and not x.is_contiguous() and x.is_contiguous(memory_format=fmt):
        out = out.contiguous(memory_format=fmt)
    return out


def _fast_forward(
    x: Tensor,
    m: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    scale: Tensor,
    valid: Tensor,
    spec: _Spec,
) -> tuple[Tensor, Tensor]:
    """Eager CPU: select, convolution, in-place rescale and bias. Returns the output and the
    selected input."""
    xz = select_into(x, m, out=torch.empty_like(x))
    raw = torch.convolution(
        xz,
        weight,
        None,
        spec.stride,
        spec.padding,
        spec.dilation,
        spec.transposed,
        spec.output_padding,
        spec.groups,
    )
    gc = scale.shape[1]
    out = _grouped(raw, gc)
    out.mul_(_small(scale, gc))  # exactly 0 at invalid outputs: all their inputs are selected zeros
    if bias is not None:
        out.addcmul_(_bias_view(bias, gc, spec.nd), _small(valid, gc))  # bool valid: b where valid
    return raw, xz


class _Aux(NamedTuple):
    """What the fused node needs besides its differentiable inputs."""

    m: Tensor
    scale: Tensor
    valid: Tensor
    spec: _Spec


class _PartialConvFn(torch.autograd.Function):
    """The eager-CPU partial convolution as one autograd node.

    forward: ``_fast_forward``. ``x`` (which a plain convolution saves too), the mask, the
    weight and the small per-window tensors are kept for the backward pass; the selected
    input too when it has at most ``_ONE_CALL`` elements (a few hundred kilobytes), else it
    is recomputed there.

    backward: ``g = select(grad, valid) · scale`` (in place), the bias gradient
    ``Σ select(grad, valid)``, the weight gradient from ``g`` and the selected input, the
    input gradient from ``g`` selected in place by the input mask. Small inputs get both
    gradients from one ``convolution_backward`` call with the kept selected input; larger
    ones re-select the input, compute the weight gradient and free it before the input
    gradient is allocated (a second backward with ``retain_graph`` re-selects too). With
    ``create_graph`` or a batched gradient: the composable path's backward.

    Only ``x``, the weight and the bias are autograd inputs; the mask, the rescale, the
    output validity and the convolution's arguments travel in one ``_Aux``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, aux: _Aux) -> Tensor:
        # Only x, the weight and the bias are autograd inputs; the mask-derived tensors travel
        # in ``aux`` (fewer arguments to unwrap and record per call).
        ctx.save_for_backward(x, weight, bias, aux.m)
        ctx.aux = aux
        out, xz = _fast_forward(x, aux.m, weight, bias, aux.scale, aux.valid, aux.spec)
        # Small inputs: the selected input is kept for the backward (at most ``_ONE_CALL``
        # elements); larger ones recompute it there.
        ctx.xz = xz if x.numel() <= _ONE_CALL else None
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, bias, m = ctx.saved_tensors
        _, scale, valid, spec = ctx.aux
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled() or not fast_path(grad):
            gx, _, gw, gb, _, _ = differentiable_backward(
                functools.partial(_composite, spec=spec),
                (x, m, weight, bias, scale, valid),
                (grad,),
                (need_x, False, need_w, need_b, False, False),
            )
            return gx, gw, gb, None
        args = (spec.stride, spec.padding, spec.dilation, spec.transposed, spec.output_padding, spec.groups)
        gc = scale.shape[1]
        g = torch.empty_like(grad)
        g_g = _grouped(g, gc)
        select_into(_grouped(grad, gc), _small(valid, gc), out=g_g)  # selected, never multiplied
        grad_b = g.sum([0, *range(2, g.dim())]) if need_b else None
        g_g.mul_(_small(scale, gc))
        grad_x = grad_w = None
        xz, ctx.xz = ctx.xz, None
        if need_w and xz is not None:
            # Small inputs: one call for both gradients, with the selected input kept by the forward.
            grad_x, grad_w, _ = _CONV_BACKWARD(g, xz, weight, None, *args, [need_x, True, False])
        else:
            if need_w:
                xz = select_into(x, m, out=torch.empty_like(x))
                grad_w = _CONV_BACKWARD(g, xz, weight, None, *args, [False, True, False])[1]
                del xz  # freed before the input gradient is allocated
            if need_x:
                # The input gradient reads the input's shape only, not its values.
                grad_x = _CONV_BACKWARD(g, x, weight, None, *args, [True, False, False])[0]
        if grad_x is not None:
            select_into(grad_x, m, out=grad_x)
        return grad_x, grad_w, grad_b, None


def _fused(x: Tensor, weight: Tensor, bias: Tensor | None, aux: _Aux) -> Tensor:
    """The eager fast kernels: one autograd node when a gradient is recorded, else the forward alone."""
    if torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        out: Tensor = _PartialConvFn.apply(x, weight, bias, aux)
        return out
    return _fast_forward(x, aux.m, weight, bias, aux.scale, aux.valid, aux.spec)[0]


def _finish(
    x: Tensor,
    m: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    kernel: tuple[int, ...],
    spec: _Spec,
    padding_valid: bool,
    autocast: bool,
    c_out: int,
    eager: bool,
) -> Masked:
    """Counts, rescale, the convolution on the path that ``eager`` picks, the output mask."""
    if eager and x.shape[0] == 0:
        eager = False  # torch's reference kernels of the counts refuse an empty batch; nothing to speed up
    acc = acc_dtype(x)
    groups = spec.groups
    is_sh = m.shape[1] == 1 or is_shared(m)
    if eager and is_sh and not (padding_valid or autocast or spec.transposed or spec.pre_pad):
        return _shared_eager(x, m if m.shape[1] == 1 else shared(m), weight, bias, kernel, spec, acc)
    if is_sh:
        m_sh = m if m.shape[1] == 1 else shared(m)
        cnt_in, per = m_sh.to(acc), 1
    else:  # per channel: summed over the input channels of each group
        n, c = m.shape[0], m.shape[1]
        per = c // groups
        # Eager: bytes summed into int32 (exact, and 6-8x faster than summing bools into floats).
        mm = m.view(torch.uint8) if eager else m
        mm = mm.unsqueeze(1) if groups == 1 else mm.reshape(n, groups, per, *m.shape[2:])
        cnt_in = mm.sum(2, dtype=torch.int32).to(acc) if eager else mm.sum(2, dtype=acc)
    c_pad = cnt_in if spec.pre_pad is None else F.pad(cnt_in, spec.pre_pad)
    box = _box_eager if eager else _box
    if autocast:  # the counts stay in float32 (autocast would run this convolution in half precision)
        with torch.autocast(x.device.type, enabled=False):
            cnt = box(c_pad, kernel, spec)
    else:
        cnt = box(c_pad, kernel, spec)
    geo = _geometry(spec, kernel, per, tuple(x.shape[2:]), padding_valid, acc, x.device, eager)
    scale, valid = _rescale(cnt, cnt_in, geo, x.dtype)
    if eager and spec.pre_pad is None:
        out = _fused(x, weight, bias, _Aux(m_sh if is_sh else m, scale, valid, spec))
    else:
        out = _composite(x, m, weight, bias, scale, valid, spec)
    gc = valid.shape[1]
    if gc > 1:
        nm, out_sp = valid.shape[0], valid.shape[2:]
        mask = valid.unsqueeze(2).expand(nm, gc, c_out // gc, *out_sp).reshape(nm, c_out, *out_sp)
    elif not is_sh:
        mask = valid.expand(valid.shape[0], c_out, *valid.shape[2:])
    else:
        mask = valid
    if eager:  # both tensors come from this op: skip the carrier's re-validation
        return tuple.__new__(Masked, (out, mask))
    return Masked(out, mask)


_THNN_CONV2D: Any = torch._C._nn.thnn_conv2d  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=64)
def _cpu_box(kernel: tuple[int, ...], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The ones kernel of the valid counts and the window size, on the CPU."""
    cpu = torch.device("cpu")
    return _cached_ones((1, 1, *kernel), dtype, cpu), _cached_scalar(float(math.prod(kernel)), dtype, cpu)


def _shared_eager(
    x: Tensor,
    m: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    kernel: tuple[int, ...],
    spec: _Spec,
    acc: torch.dtype,
) -> Masked:
    """``_finish`` for the common case, inline: eager CPU, a channel-shared mask ``(N, 1, ...)``,
    a direct convolution, zero padding counted as masked, no autocast.

    The same steps and kernels as the general path, with fewer Python calls: at small sizes the
    per-call cost is what the layer adds to a plain convolution.
    """
    ones, window = _cpu_box(kernel, acc)
    if spec.nd == 2 and spec.dilation == (1, 1):  # ``_box_eager``'s kernel, called directly
        cnt = _THNN_CONV2D(m.to(acc), ones, kernel, None, spec.stride, spec.padding)
    else:
        cnt = _box_eager(m.to(acc), kernel, spec)
    valid = cnt > 0
    # Zero counts clamped to 1: see ``_rescale``.
    scale = torch.div(window, cnt.clamp_min_(1))
    if scale.dtype != x.dtype:
        scale = scale.to(x.dtype)
    return tuple.__new__(Masked, (_fused(x, weight, bias, _Aux(m, scale, valid, spec)), valid))


def _direct_spec(
    op: str,
    nd: int,
    kernel: tuple[int, ...],
    stride: IntOrSeq,
    padding: Padding,
    dilation: IntOrSeq,
    groups: int,
) -> tuple[_Spec, tuple[tuple[int, int], ...]]:
    """The checked convolution arguments of a direct convolution and its ``(before, after)`` pads."""
    st = _positive(op, "stride", ntuple(op, "stride", stride, nd))
    dil = _positive(op, "dilation", ntuple(op, "dilation", dilation, nd))
    pads = _padding(op, nd, padding, kernel, st, dil)
    if all(a == b for a, b in pads):
        return _Spec(nd, False, st, tuple(a for a, _ in pads), dil, (0,) * nd, groups, None), pads
    # asymmetric ('same' with an even kernel, explicit pairs): pad the selected input
    return _Spec(nd, False, st, (0,) * nd, dil, (0,) * nd, groups, tuple(_flat_pad(pads))), pads


def _transposed_spec(
    op: str,
    nd: int,
    stride: IntOrSeq,
    padding: IntOrSeq,
    output_padding: IntOrSeq,
    dilation: IntOrSeq,
    groups: int,
) -> _Spec:
    """The checked convolution arguments of a transposed convolution."""
    st = _positive(op, "stride", ntuple(op, "stride", stride, nd))
    dil = _positive(op, "dilation", ntuple(op, "dilation", dilation, nd))
    pad = ntuple(op, "padding", padding, nd)
    opad = ntuple(op, "output_padding", output_padding, nd)
    if any(p < 0 for p in pad) or any(p < 0 for p in opad):
        raise ValueError(f"{op}: padding and output_padding must be >= 0, got {pad} and {opad}")
    if any(o >= max(s, d) for o, s, d in zip(opad, st, dil)):
        raise ValueError(
            f"{op}: output_padding must be smaller than the stride or the dilation, got "
            f"output_padding={opad}, stride={st}, dilation={dil}"
        )
    return _Spec(nd, True, st, pad, dil, opad, groups, None)


_cached_direct_spec = functools.lru_cache(maxsize=256)(_direct_spec)
_cached_transposed_spec = functools.lru_cache(maxsize=256)(_transposed_spec)


def _spec(eager: bool, build: Any, cached: Any, *args: Any) -> Any:
    """``build(*args)``, memoized in eager mode when the arguments are hashable."""
    if eager:
        try:
            return cached(*args)
        except TypeError:  # lists: unhashable (a genuine TypeError is raised again below)
            pass
    return build(*args)


def _quick(
    op: str,
    nd: int,
    x: object,
    mask: object,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrSeq,
    padding: Padding,
    dilation: IntOrSeq,
    groups: int,
    padding_valid: bool,
) -> Masked | None:
    """The common case in a few comparisons, or ``None`` for anything else.

    Common: eager CPU float32/float64 tensors, a bool mask ``(N, 1, *spatial)`` (channel-shared,
    not broadcast over the batch), a direct convolution whose arguments the Modules store,
    ``padding_valid=False``, no autocast. Every condition that the general path checks is
    checked here too (as a condition for taking this path: anything unusual goes through
    ``_partial_conv``'s validation, which raises the errors); the partial convolution is then
    ``_shared_eager``, as the general path would run it. At small sizes the per-call Python
    work is what a masked layer adds to a plain convolution, so it is kept short.
    """
    if (
        padding_valid
        or type(x) is not Tensor
        or type(mask) is not Tensor
        or mask.dtype is not torch.bool
        or not isinstance(weight, Tensor)
        or (bias is not None and not isinstance(bias, Tensor))
        or not fast_path(x, mask, weight, bias)
        or torch.is_autocast_enabled("cpu")
    ):
        return None
    xs, ms, ws = x.shape, mask.shape, weight.shape
    dt = x.dtype
    if (
        len(xs) != nd + 2
        or len(ms) != nd + 2
        or len(ws) != nd + 2
        or ms[1] != 1
        or ms[0] != xs[0]
        or ms[2:] != xs[2:]
        or xs[0] == 0
        or (dt is not torch.float32 and dt is not torch.float64)
        or weight.dtype is not dt
        or type(groups) is not int
        or groups < 1
        or xs[1] != ws[1] * groups
        or ws[0] % groups
    ):
        return None
    if bias is not None and (bias.dtype is not dt or bias.shape != ws[:1]):
        return None
    kernel = tuple(ws[2:])
    spec, pads = _spec(
        True, _direct_spec, _cached_direct_spec, op, nd, kernel, stride, padding, dilation, groups
    )
    if spec.pre_pad is not None:
        return None
    for n, (a, _), k, d in zip(xs[2:], pads, kernel, spec.dilation):
        if n < 1 or n + 2 * a - d * (k - 1) - 1 < 0:
            return None  # an empty input or output: the general path raises
    return _shared_eager(x, mask, weight, bias, kernel, spec, dt)


def _partial_conv(
    op: str,
    nd: int,
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrSeq,
    padding: Padding,
    dilation: IntOrSeq,
    groups: int,
    padding_valid: bool,
) -> Masked:
    quick = _quick(op, nd, x, mask, weight, bias, stride, padding, dilation, groups, padding_valid)
    if quick is not None:
        return quick
    x, m = prepare(op, x, mask, nd)
    x, weight, bias, autocast = _autocast(x, weight, bias)
    weight, bias = _check_params(op, nd, x, weight, bias, groups, transposed=False)
    kernel = tuple(weight.shape[2:])
    eager = fast_path(x, m, weight, bias)
    spec, pads = _spec(
        eager, _direct_spec, _cached_direct_spec, op, nd, kernel, stride, padding, dilation, groups
    )
    spatial = x.shape[2:]
    out = [
        (n + a + b - d * (k - 1) - 1) // s + 1
        for n, (a, b), k, s, d in zip(spatial, pads, kernel, spec.stride, spec.dilation)
    ]
    _check_sizes(op, spatial, out)
    return _finish(x, m, weight, bias, kernel, spec, padding_valid, autocast, weight.shape[0], eager)


def partial_conv1d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: Padding = 0,
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
    padding: Padding = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    padding_valid: bool = False,
) -> Masked:
    """2-d partial convolution (Liu et al. 2018) of ``x`` ``(N, C_in, H, W)``.

    Arguments as ``torch.nn.functional.conv2d``, plus the mask: ``(N, 1, H, W)``
    (shared by all channels) or ``(N, C_in, H, W)`` (per channel; the valid count then
    runs over the input channels of each group, NVIDIA's ``multi_channel=True``);
    size-1 batch or spatial dimensions broadcast. ``padding`` may also be ``'same'``,
    ``'valid'``, or one ``(before, after)`` pair per spatial dimension (asymmetric, e.g.
    to fold an explicit ``F.pad`` into the convolution).

    Returns ``Masked(out, out_mask)``: ``out = W·(x⊙m)·(window / present) + b`` at valid
    outputs, exactly 0 elsewhere. ``out_mask`` is ``(N, 1, H_out, W_out)`` for a
    channel-shared mask and ``(N, C_out, H_out, W_out)`` for a per-channel mask (an
    expanded view when the groups are 1).

    ``padding_valid=False`` (default): zero padding counts as masked, border windows are
    re-weighted (``present`` = valid inputs), and an output is valid when its window
    holds a valid input. ``padding_valid=True``: zero padding counts as present in the
    rescale (``present`` = valid inputs + padded taps), so an all-valid input gives
    exactly ``torch.nn.functional.conv2d``; padding still never makes an output
    valid: an output is valid when its window holds a valid input, except a window that
    reaches only padding (padding wider than the kernel), which is the bias alone as in
    the plain op and valid when the sample holds any valid input. A fully masked sample
    gives zeros and an all-False mask in both modes. Data padded beforehand (``F.pad``)
    is ordinary data: its mask says whether it is valid; pass the padding here instead to
    get the ``padding_valid`` meaning.

    Examples:
        >>> import torch
        >>> x = torch.ones(1, 1, 3, 3)
        >>> m = torch.tensor([[[[1, 1, 0], [1, 1, 0], [0, 0, 0]]]], dtype=torch.bool)
        >>> out = partial_conv2d(x, m, torch.ones(1, 1, 3, 3), padding=1)
        >>> out.data  # every window with a valid input gives 9 · mean of its valid inputs
        tensor([[[[9., 9., 9.],
                  [9., 9., 9.],
                  [9., 9., 9.]]]])
        >>> pv = partial_conv2d(x, m, torch.ones(1, 1, 3, 3), padding=1, padding_valid=True)
        >>> pv.data  # 9 · (sum of valid inputs) / (valid inputs + padded taps)
        tensor([[[[4.0000, 5.1429, 2.5714],
                  [5.1429, 9.0000, 3.6000],
                  [2.5714, 3.6000, 1.5000]]]])
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
    padding: Padding = 0,
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
    x, weight, bias, autocast = _autocast(x, weight, bias)
    weight, bias = _check_params(op, nd, x, weight, bias, groups, transposed=True)
    kernel = tuple(weight.shape[2:])
    eager = fast_path(x, m, weight, bias)
    spec = _spec(
        eager,
        _transposed_spec,
        _cached_transposed_spec,
        op,
        nd,
        stride,
        padding,
        output_padding,
        dilation,
        groups,
    )
    spatial = x.shape[2:]
    out = [
        (n - 1) * s - 2 * p + d * (k - 1) + o + 1
        for n, s, p, d, k, o in zip(
            spatial, spec.stride, spec.padding, spec.dilation, kernel, spec.output_padding
        )
    ]
    _check_sizes(op, spatial, out)
    c_out = weight.shape[1] * groups
    return _finish(x, m, weight, bias, kernel, spec, padding_valid, autocast, c_out, eager)


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

    ``out = conv_transpose(x⊙m) · (window / present) + b`` at valid outputs, else exactly
    0 with a False mask. ``window`` is the number of kernel taps of the output position's
    stride phase (the taps that the zero insertion of the stride does not skip); taps that
    land outside the input are this op's padding. ``padding_valid=False``: padding counts
    as masked (``present`` = valid inputs reached); valid where a valid input reaches the
    position. ``padding_valid=True``: padding counts as present (``present`` = valid
    inputs + taps outside the input), so an all-valid input gives exactly
    ``torch.nn.functional.conv_transpose2d`` at every position. An output still needs
    a valid input to be valid, except a position that no input reaches at all (stride or
    dilation gaps, ``output_padding`` rows): it is the bias alone, as in the plain op, and
    valid when the sample holds any valid input. A fully masked sample gives zeros and an
    all-False mask in both modes. Masks as in [`partial_conv2d`][masknn.functional.partial_conv2d].

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
        >>> w, b = torch.ones(1, 1, 1, 1), torch.ones(1)
        >>> gaps = partial_conv_transpose2d(x, m, w, b, stride=2, output_padding=1, padding_valid=True)
        >>> gaps.data  # the positions no tap reaches hold the bias alone, as in the plain op
        tensor([[[[2., 1., 0., 1.],
                  [1., 1., 1., 1.],
                  [0., 1., 0., 1.],
                  [1., 1., 1., 1.]]]])
        >>> gaps.mask.int()  # masked where the one tap that reaches it reads a masked input
        tensor([[[[1, 1, 0, 1],
                  [1, 1, 1, 1],
                  [0, 1, 0, 1],
                  [1, 1, 1, 1]]]], dtype=torch.int32)
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
