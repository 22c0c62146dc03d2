"""Normalization over valid positions only: batch, instance, group and layer norm.

Statistics (mean, biased variance) are taken over the valid elements of each
normalization group; sums and counts accumulate in float32 for float16/bfloat16
data (so half-precision inputs stay finite) and in the data's dtype otherwise.
The output mask is the input mask; masked outputs are exactly 0. A group with no
valid element gives 0 (it has no valid output either) and never updates a running
statistic.

The moments are computed in two passes over the zero-filled data: the mean over
the ``n`` valid elements, then the sum of squares of the valid deviations from it
(a one-pass ``Σx²/n - mean²`` loses all precision in float32 when ``|mean| >> std``).

Two implementations of one function (see ``masknn.functional._select``):

* the **composable path**: plain differentiable torch ops (``select``, sums,
  ``rsqrt``), taken under ``torch.compile``, ``torch.export``, ONNX export, every
  ``torch.func`` transform, for half precision and off the CPU. It is differentiable
  any number of times.
* the **eager fast path** of batch norm (float32/float64 on CPU): one autograd node
  per call (training and eval), with in-place bitwise selects (in training the
  composable path's formula ``(x - mean)·rstd·w + b``, in eval torch's inference-form
  batch-norm kernel). Its backward is hand-written and in place; when a
  graph of the backward is asked for (double backward) or the backward runs under a
  transform, it re-derives the gradient from the composable path instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str, to_bool_mask
from masknn.functional._autocast import twin_dtype
from masknn.functional._layout import follow_layout
from masknn.functional._select import differentiable_backward, fast_path, select, select_into
from masknn.functional._spatial import acc_dtype

__all__ = [
    "masked_batch_norm",
    "masked_group_norm",
    "masked_instance_norm",
    "masked_layer_norm",
]

_FAST_DTYPES = (torch.float32, torch.float64)


def _prepare(
    op: str, x: object, mask: object, min_dim: int, allow_sequence: bool = False
) -> tuple[Tensor, Tensor]:
    x = check_data(op, x)
    if x.dim() < min_dim:
        raise ValueError(
            f"{op}: expected data with at least {min_dim} dimensions, got shape {shape_str(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{op}: expected floating point data, got dtype {x.dtype}")
    return x, follow_layout(to_bool_mask(op, x, mask, allow_sequence=allow_sequence), x)


def _count(m: Tensor, shape: Sequence[Any], dims: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Valid elements over ``dims`` (keepdim), without expanding broadcast mask dimensions.

    Sizes stay symbolic under ``torch.compile(dynamic=True)`` (no ``int()`` of a size).
    """
    n = m.sum(dim=dims, keepdim=True, dtype=dtype) if dims else m.to(dtype)
    for d in dims:
        if m.shape[d] == 1:
            n = n * shape[d]
    return n


def _moments(x: Tensor, m: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(valid deviations from the mean, count, mean, M2)``: keepdim, in the accumulation dtype.

    The deviations are ``x - mean`` at valid positions and exactly 0 elsewhere;
    ``M2 = Σ (x - mean)²`` over the valid positions. Plain differentiable ops.
    """
    acc = acc_dtype(x)
    xz = select(x, m).to(acc)
    n = _count(m, x.shape, dims, acc)
    mean = xz.sum(dim=dims, keepdim=True) / n.clamp_min(1)
    # Two passes (Σx²/n - mean² cancels catastrophically when |mean| >> std).
    dev = select(xz - mean, m)
    m2 = dev.square().sum(dim=dims, keepdim=True)
    return dev, n, mean, m2


def batch_norm_moments(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-channel ``(valid count, mean, M2)`` of ``x`` ``(N, C, *)`` over its valid positions.

    Internal (not in ``masknn.functional``), kept stable for the masked SyncBatchNorm,
    which combines these moments across ranks.

    ``M2 = Σ (x - mean)²`` over the valid positions of each channel (the centred second
    moment; the biased variance is ``M2 / count``). All three have shape ``(C,)`` and the
    accumulation dtype (float32 for half precision). Built from plain differentiable ops,
    so gradients flow through the mean and ``M2``. Partial moments of several batches (or
    ranks) combine exactly with Chan's formula:
    ``n = Σ n_i``, ``mean = Σ n_i·mean_i / n``, ``M2 = Σ M2_i + Σ n_i·(mean_i - mean)²``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 3.0, float("nan")]], [[5.0, float("nan"), float("nan")]]])
        >>> batch_norm_moments(x, ~x.isnan())
        (tensor([3.]), tensor([3.]), tensor([8.]))
    """
    x, m = _prepare("batch_norm_moments", x, mask, 2)
    dims = (0, *range(2, x.dim()))
    _, n, mean, m2 = _moments(x, m, dims)
    c = x.shape[1]
    return n.reshape(-1).expand(c), mean.reshape(-1), m2.reshape(-1)


def _affine_shape(x: Tensor, channel_dim: int = 1) -> list[int]:
    shape = [1] * x.dim()
    shape[channel_dim] = x.shape[channel_dim]
    return shape


def _scale_shift(
    dev: Tensor, var: Tensor, eps: float, weight: Tensor | None, bias: Tensor | None, shape: Sequence[Any]
) -> Tensor:
    """``dev / sqrt(var + eps) · weight + bias`` (``dev`` = the deviations from the mean)."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight.to(scale.dtype).reshape(shape)
    y = dev * scale
    if bias is not None:
        y = y + bias.to(y.dtype).reshape(shape)
    return y


def _bn_dtype(x: Tensor) -> torch.dtype:
    return twin_dtype(x, lambda t: F.batch_norm(t, None, None, training=True), (2, 1))


# --------------------------------------------------------------------------- batch norm
def _batch_norm_train(
    x: Tensor, m: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The composable training form: ``(output in x's dtype, mean (C,), biased var (C,), count (C,))``."""
    dims = (0, *range(2, x.dim()))
    shape = _affine_shape(x)
    dev, n, mean, m2 = _moments(x, m, dims)
    var = m2 / n.clamp_min(1)
    y = select(_scale_shift(dev, var, eps, weight, bias, shape), m).to(_bn_dtype(x))
    c = x.shape[1]
    return y, mean.reshape(-1), var.reshape(-1), n.reshape(-1).expand(c)


def _batch_norm_eval(
    x: Tensor,
    m: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
) -> Tensor:
    """The composable inference form: ``select((x - running_mean) / sqrt(running_var + eps)·w + b)``.

    The input is selected first only when the weight needs a gradient (``Σ dy·x̂`` would
    read NaN/Inf from masked inputs); otherwise masked values only reach masked outputs,
    which the final select replaces, and their gradient is the selected output gradient
    times a per-channel scale: one select instead of two (compiled, each ``where`` with a
    broadcast mask is a full pass).
    """
    acc = acc_dtype(x)
    shape = _affine_shape(x)
    weight_grad = torch.is_grad_enabled() and weight is not None and weight.requires_grad
    xz = select(x, m).to(acc) if weight_grad else x.to(acc)
    dev = xz - running_mean.to(acc).reshape(shape)
    y = _scale_shift(dev, running_var.to(acc).reshape(shape), eps, weight, bias, shape)
    return select(y, m).to(_bn_dtype(x))


def _chan_view(t: Tensor) -> Tensor | None:
    """``t`` ``(N, C, *)`` as ``(N, C, L)`` without a copy when it is contiguous, else None."""
    return t.view(t.shape[0], t.shape[1], -1) if t.is_contiguous() else None


def _chan_sum(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Per-channel sum ``(C,)`` (the reduction over the contiguous last dimension first: fastest)."""
    v = _chan_view(t)
    return v.sum(2).sum(0) if v is not None else t.sum(dims)


def _chan_sumsq(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Per-channel sum of squares ``(C,)``: ``Σ t²`` as the composable path sums it.

    Not ``vector_norm(t)²``: faster (no temporary), but its square root and square round
    twice (a variance of exactly 1 came out as 1.0000001). A batched matrix product of the
    rows (no temporary either) measured slower than ``vecdot``.
    """
    v = _chan_view(t)
    if v is not None:
        return torch.linalg.vecdot(v, v, dim=2).sum(0)
    return t.square().sum(dims)


def _stat_shape(x: Tensor) -> list[int]:
    return [1, -1] + [1] * (x.dim() - 2)


class _BatchNormTrain(torch.autograd.Function):
    """Masked batch norm in training mode as one autograd node (eager CPU, float32/float64).

    Fresh full-size buffers are what costs most on a CPU (page faults), so the node
    allocates one per pass, as ``nn.BatchNorm2d`` does, and works in place in it:

    forward, in the output buffer: ``select(x)``, whose per-channel sum over the ``n``
    valid elements gives the mean; minus the mean times the mask (``addcmul_``: the valid
    deviations, exactly 0 where masked), whose squares sum to ``M2 = Σ (x - mean)²``
    (two passes over the data, precise when ``|mean| >> std``); then scaled by ``rstd·w``,
    shifted by ``b`` and selected in place. That is the composable path's formula,
    ``(x - mean)·scale + b``, not torch's folded ``x·scale + (b - mean·scale)``, whose
    rounding error grows with ``|mean| / std`` (a channel whose valid values are nearly
    equal gave 2e-5 instead of 0 with it). Saved: ``x``, the mask and the per-channel
    statistics.

    backward, in the gradient buffer: ``Σ select(dy)`` (bias gradient), then
    ``Σ select((x - mean)·dy)·rstd`` (weight gradient, ``Σ dy·x̂``), then
    ``dx = w·rstd·(dy - Σdy/n - x̂·Σ(dy·x̂)/n)`` formed as ``B·(x - mean) + A·dy - C``
    and selected in place. With ``create_graph=True`` (or a batched gradient) the
    backward differentiates the composable form instead, so double backward works.
    """

    @staticmethod
    def forward(
        x: Tensor, m: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c = x.shape[1]
        dims = (0, *range(2, x.dim()))
        shape = _stat_shape(x)
        buf = select_into(x, m, out=torch.empty_like(x))
        n = _count(m, x.shape, dims, x.dtype).reshape(-1).expand(c)
        n1 = n.clamp_min(1)
        mean = _chan_sum(buf, dims) / n1
        # The valid deviations: x - mean where valid, exactly 0 where masked (mean · False = 0).
        buf.addcmul_(mean.view(shape), m, value=-1)
        var = _chan_sumsq(buf, dims) / n1
        scale = torch.rsqrt(var + eps)
        if weight is not None:
            scale = scale * weight
        # (x - mean) · scale + bias as the composable path computes it (not torch's folded
        # x · scale + (bias - mean · scale), whose rounding grows with |mean| / std).
        buf.mul_(scale.view(shape))
        if bias is not None:
            buf.add_(bias.view(shape))
        return select_into(buf, m, out=buf), mean, var, n

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x, m, weight, bias, eps = inputs
        _, mean, var, n = output
        ctx.save_for_backward(x, m, weight, bias, mean, var, n)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var, n)
        ctx.set_materialize_grads(False)  # no zero-filled gradients for the statistics

    @staticmethod
    def backward(ctx: Any, grad: Tensor | None, *_: Any) -> tuple[Tensor | None, ...]:
        if grad is None:
            return None, None, None, None, None
        x, m, weight, bias, mean, var, n = ctx.saved_tensors
        eps = ctx.eps
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled() or not fast_path(grad):
            gx, gw, gb = differentiable_backward(
                lambda x_, w_, b_: _batch_norm_train(x_, m, w_, b_, eps)[0],
                (x, weight, bias),
                (grad,),
                (needs[0], needs[2], needs[3]),
            )
            return gx, None, gw, gb, None
        dims = (0, *range(2, x.dim()))
        shape = _stat_shape(x)
        n1 = n.clamp_min(1)
        rstd = torch.rsqrt(var + eps)
        mean_b = mean.view(shape)
        buf = select_into(grad, m, out=torch.empty_like(x))
        gb = _chan_sum(buf, dims)
        torch.sub(x, mean_b, out=buf).mul_(grad)
        gw = _chan_sum(select_into(buf, m, out=buf), dims) * rstd  # Σ dy·x̂
        gx = None
        if needs[0]:
            a = rstd if weight is None else weight * rstd
            b = -a * rstd * gw / n1
            gx = torch.sub(x, mean_b, out=buf).mul_(b.view(shape))
            gx.addcmul_(grad, a.view(shape)).sub_((a * gb / n1).view(shape))
            select_into(gx, m, out=gx)
        return gx, None, gw if needs[2] else None, gb if needs[3] else None, None


class _BatchNormEval(torch.autograd.Function):
    """Masked batch norm with given statistics as one autograd node (eager CPU, float32/float64).

    forward: torch's inference-form batch-norm kernel on ``x``, then the output is
    selected in place (masked positions, whatever they held, become exactly 0).
    backward, in one buffer: ``Σ select((x - mean)·dy)·rstd`` (weight gradient), then
    ``select(dy)``, its sum (bias gradient) and ``dx = select(dy)·w·rstd``. With
    ``create_graph=True`` (or a batched gradient) it differentiates the composable form
    instead.
    """

    @staticmethod
    def forward(
        x: Tensor,
        m: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
    ) -> Tensor:
        out = torch.native_batch_norm(x, weight, bias, running_mean, running_var, False, 0.0, eps)[0]
        return select_into(out, m, out=out)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, m, running_mean, running_var, weight, bias, eps = inputs
        ctx.save_for_backward(x, m, running_mean, running_var, weight, bias)
        ctx.eps = eps

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, m, rm, rv, weight, bias = ctx.saved_tensors
        eps = ctx.eps
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled() or not fast_path(grad):
            gx, gw, gb = differentiable_backward(
                lambda x_, w_, b_: _batch_norm_eval(x_, m, rm, rv, w_, b_, eps),
                (x, weight, bias),
                (grad,),
                (needs[0], needs[4], needs[5]),
            )
            return gx, None, None, None, gw, gb, None
        dims = (0, *range(2, x.dim()))
        shape = _stat_shape(x)
        rstd = torch.rsqrt(rv + eps)
        buf = torch.empty_like(x)
        gw = None
        if needs[4]:
            torch.sub(x, rm.view(shape), out=buf).mul_(grad)
            gw = _chan_sum(select_into(buf, m, out=buf), dims) * rstd
        dy = select_into(grad, m, out=buf)
        gb = _chan_sum(dy, dims) if needs[5] else None
        gx = dy.mul_((rstd if weight is None else weight * rstd).view(shape)) if needs[0] else None
        return gx, None, None, None, gw, gb, None


def _fast_bn(x: Tensor, m: Tensor, *others: Tensor | None) -> bool:
    return (
        x.dtype in _FAST_DTYPES
        and all(t is None or t.dtype == x.dtype for t in others)
        and x.numel() > 0
        and not torch.is_autocast_enabled(x.device.type)
        and fast_path(x, m, *others)
    )


def masked_batch_norm(
    x: Tensor,
    mask: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Masked:
    """Batch normalization of ``x`` ``(N, C, *)`` over its valid elements (as ``F.batch_norm``).

    In training, each channel's mean and biased variance are taken over the valid
    elements of the batch; ``running_mean``/``running_var`` (when given) are updated in
    place with ``momentum`` from valid values only, the variance unbiased by
    ``n / (n - 1)`` as torch does (a channel with no valid element is left as it is;
    one with a single valid element updates its mean only). Otherwise the running
    statistics are used.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 3.0, 1e6]]])
        >>> m = torch.tensor([[[True, True, False]]])
        >>> masked_batch_norm(x, m, training=True, eps=0.0).data
        tensor([[[-1.,  1.,  0.]]])
    """
    return batch_norm(
        "masked_batch_norm", x, mask, running_mean, running_var, weight, bias, training, momentum, eps
    )


def batch_norm(
    op: str,
    x: Tensor,
    mask: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    training: bool,
    momentum: float | None,
    eps: float,
    num_batches_tracked: Tensor | None = None,
) -> Masked:
    """``masked_batch_norm`` with errors naming ``op``, and the Modules' batch counter.

    In training with ``num_batches_tracked`` (a 0-d integer buffer), the counter is
    incremented in place when the batch holds at least one valid element (a batch with
    none changes no state at all), and ``momentum=None`` updates the running statistics
    with the cumulative average ``1 / num_batches_tracked``, as ``nn.BatchNorm2d``.
    No Python branch on tensor values: compiled and exported graphs keep it.
    """
    x, m = _prepare(op, x, mask, 2)
    if training:
        if _fast_bn(x, m, weight, bias):
            y, mean, var, n = _BatchNormTrain.apply(x, m, weight, bias, eps)
        else:
            y, mean, var, n = _batch_norm_train(x, m, weight, bias, eps)
        if running_mean is not None or running_var is not None or num_batches_tracked is not None:
            with torch.no_grad():
                mean, var, n = mean.detach(), var.detach(), n.detach()
                factor = count_batch(num_batches_tracked, n, momentum)
                if running_mean is not None or running_var is not None:
                    unbiased = var * n / (n - 1).clamp_min(1)
                    _update(running_mean, running_var, mean, unbiased, n > 0, n > 1, factor)
        return Masked(y, m)
    if running_mean is None or running_var is None:
        raise ValueError(f"{op}: running_mean and running_var are required when training=False")
    if _fast_bn(x, m, running_mean, running_var, weight, bias):
        y = _BatchNormEval.apply(x, m, running_mean, running_var, weight, bias, eps)
    else:
        y = _batch_norm_eval(x, m, running_mean, running_var, weight, bias, eps)
    return Masked(y, m)


@torch.no_grad()
def count_batch(num_batches_tracked: Tensor | None, n: Tensor, momentum: float | None) -> float | Tensor:
    """Count a training batch in ``num_batches_tracked`` (in place) when some channel has a valid
    element (``n``: the per-channel valid counts); return the running statistics' update factor:
    ``momentum``, or with ``momentum=None`` the cumulative average ``1 / num_batches_tracked``
    (a 0-d tensor: no host synchronization, nothing for a compiler to guard on).

    Examples:
        >>> import torch
        >>> tracked = torch.tensor(3)
        >>> count_batch(tracked, torch.tensor([0.0, 5.0]), None), tracked
        (tensor(0.2500), tensor(4))
        >>> count_batch(tracked, torch.tensor([0.0, 0.0]), None), tracked  # no valid element: not counted
        (tensor(0.2500), tensor(4))
    """
    if num_batches_tracked is not None:
        num_batches_tracked.add_(n.any())  # counts are >= 0: any nonzero is a valid element
    if momentum is not None:
        return momentum
    if num_batches_tracked is None:
        return 0.0  # as nn.BatchNorm without a counter: the statistics stay
    return 1.0 / num_batches_tracked.clamp_min(1).to(n.dtype)


@torch.no_grad()
def _update(
    running_mean: Tensor | None,
    running_var: Tensor | None,
    mean: Tensor,
    unbiased_var: Tensor,
    has_mean: Tensor,
    has_var: Tensor,
    momentum: float | Tensor,
) -> None:
    """Move the running statistics toward ``mean``/``unbiased_var`` where ``has_*`` (per channel)."""
    if running_mean is not None:
        mean = mean.reshape(-1).to(running_mean.dtype)
        new = torch.lerp(running_mean, mean, momentum)
        running_mean.copy_(torch.where(has_mean.reshape(-1), new, running_mean))
    if running_var is not None:
        unbiased_var = unbiased_var.reshape(-1).to(running_var.dtype)
        new = torch.lerp(running_var, unbiased_var, momentum)
        running_var.copy_(torch.where(has_var.reshape(-1), new, running_var))


# ----------------------------------------------------------------- instance, group, layer
def masked_instance_norm(
    x: Tensor,
    mask: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Masked:
    """Instance normalization of ``x`` ``(N, C, *)`` over the valid elements of each (sample, channel).

    As ``torch.nn.functional.instance_norm``. With ``use_input_stats`` and running
    statistics, these are updated with the mean over the instances that have a valid
    element (the variance of each instance unbiased by ``n / (n - 1)``).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 3.0, float("nan")]]])
        >>> masked_instance_norm(x, ~x.isnan(), eps=0.0).data
        tensor([[[-1.,  1.,  0.]]])
    """
    return instance_norm(
        "masked_instance_norm",
        x,
        mask,
        running_mean,
        running_var,
        weight,
        bias,
        use_input_stats,
        momentum,
        eps,
    )


def instance_norm(
    op: str,
    x: Tensor,
    mask: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
) -> Masked:
    """``masked_instance_norm`` with errors naming ``op``."""
    x, m = _prepare(op, x, mask, 3)
    dims = tuple(range(2, x.dim()))
    shape = _affine_shape(x)
    out_dtype = twin_dtype(x, lambda t: F.instance_norm(t), (1, 1, 2))
    if use_input_stats:
        dev, n, mean, m2 = _moments(x, m, dims)
        var = m2 / n.clamp_min(1)
        if running_mean is not None or running_var is not None:
            with torch.no_grad():
                n_b = n.expand(mean.shape).reshape(x.shape[0], x.shape[1])
                zero = torch.zeros((), dtype=mean.dtype, device=mean.device)
                has, has_v = n_b > 0, n_b > 1
                k, k_v = has.sum(0), has_v.sum(0)
                inst_mean = torch.where(has, mean.reshape(n_b.shape), zero).sum(0) / k.clamp_min(1)
                unbiased = var.reshape(n_b.shape) * n_b / (n_b - 1).clamp_min(1)
                inst_var = torch.where(has_v, unbiased, zero).sum(0) / k_v.clamp_min(1)
                _update(running_mean, running_var, inst_mean, inst_var, k > 0, k_v > 0, momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var are required when use_input_stats=False")
        acc = acc_dtype(x)
        dev = select(x, m).to(acc) - running_mean.to(acc).reshape(shape)
        var = running_var.to(acc).reshape(shape)
    y = _scale_shift(dev, var, eps, weight, bias, shape)
    return Masked(select(y, m).to(out_dtype), m)


def masked_group_norm(
    x: Tensor,
    mask: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Masked:
    """Group normalization of ``x`` ``(N, C, *)`` over the valid elements of each (sample, group).

    As ``torch.nn.functional.group_norm``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0], [3.0], [float("nan")], [5.0]]])
        >>> masked_group_norm(x, ~x.isnan(), 1, eps=0.0).data.flatten()
        tensor([-1.2247,  0.0000,  0.0000,  1.2247])
    """
    return group_norm("masked_group_norm", x, mask, num_groups, weight, bias, eps)


def group_norm(
    op: str,
    x: Tensor,
    mask: Tensor,
    num_groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
) -> Masked:
    """``masked_group_norm`` with errors naming ``op``."""
    x, m = _prepare(op, x, mask, 2)
    n_, c = x.shape[0], x.shape[1]
    if num_groups < 1 or c % num_groups:
        raise ValueError(
            f"{op}: {c} channels (data shape {shape_str(x.shape)}) are not divisible by {num_groups} groups"
        )
    g = num_groups
    spatial = x.shape[2:]
    xg = x.reshape(n_, g, c // g, *spatial)
    mg = m.unsqueeze(1) if m.shape[1] == 1 else m.reshape(m.shape[0], g, c // g, *m.shape[2:])
    dims = tuple(range(2, xg.dim()))
    dev, n, _, m2 = _moments(xg, mg, dims)
    var = m2 / n.clamp_min(1)
    wshape = [1, g, c // g] + [1] * len(spatial)
    y = _scale_shift(dev, var, eps, weight, bias, wshape).reshape(x.shape)
    out_dtype = twin_dtype(x, lambda t: F.group_norm(t, 1), (1, 1, 2))
    return Masked(select(y, m).to(out_dtype), m)


def masked_layer_norm(
    x: Tensor,
    mask: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Masked:
    """Layer normalization over the valid elements of the last ``len(normalized_shape)`` dimensions.

    As ``torch.nn.functional.layer_norm``. A sequence mask ``(N, T)`` for data
    ``(N, T, F)`` is taken as ``(N, T, 1)``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, 3.0, float("nan")]])
        >>> masked_layer_norm(x, ~x.isnan(), 3, eps=0.0).data
        tensor([[-1.,  1.,  0.]])
    """
    return layer_norm("masked_layer_norm", x, mask, normalized_shape, weight, bias, eps)


def layer_norm(
    op: str,
    x: Tensor,
    mask: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
) -> Masked:
    """``masked_layer_norm`` with errors naming ``op``."""
    x, m = _prepare(op, x, mask, 1, allow_sequence=True)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or x.dim() < k or tuple(x.shape[-k:]) != shape:
        raise ValueError(
            f"{op}: normalized_shape {shape} does not match the last dimensions of data shape "
            f"{shape_str(x.shape)}"
        )
    dims = tuple(range(x.dim() - k, x.dim()))
    dev, n, _, m2 = _moments(x, m, dims)
    y = dev * torch.rsqrt(m2 / n.clamp_min(1) + eps)
    if weight is not None:
        y = y * weight.to(y.dtype)
    if bias is not None:
        y = y + bias.to(y.dtype)
    out_dtype = twin_dtype(x, lambda t: F.layer_norm(t, (2,)), (1, 2))
    return Masked(select(y, m).to(out_dtype), m)
