"""Normalization over valid positions only: batch, instance, group and layer norm.

Statistics (mean, biased variance) are taken over the valid elements of each
normalization group; sums and counts accumulate in float32 for float16/bfloat16
data (so half-precision inputs stay finite) and in the data's dtype otherwise.
The output mask is the input mask; masked outputs are exactly 0. A group with no
valid element gives 0 (it has no valid output either) and never updates a running
statistic.

The moments are computed in two passes over the zero-filled data: the mean over
the ``n`` valid elements, then the mean square of the valid deviations from it (a
one-pass ``Σx²/n - mean²`` loses all precision in float32 when ``|mean| >> std``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from masknn._masked import Masked
from masknn._validation import check_data, shape_str, to_bool_mask
from masknn.functional._spatial import acc_dtype, select_into

__all__ = ["masked_batch_norm", "masked_group_norm", "masked_instance_norm", "masked_layer_norm"]


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
    return x, to_bool_mask(op, x, mask, allow_sequence=allow_sequence)


def _count(m: Tensor, shape: Sequence[int], dims: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Valid elements over ``dims`` (keepdim), without expanding broadcast mask dimensions."""
    factor = 1
    for d in dims:
        if m.shape[d] == 1:
            factor *= int(shape[d])
    n = m.sum(dim=dims, keepdim=True, dtype=dtype) if dims else m.to(dtype)
    return n * factor if factor != 1 else n


def _moments(x: Tensor, m: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(zero-filled data in the accumulation dtype, mean, biased var, count)``; keepdim shapes."""
    acc = acc_dtype(x)
    xz = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).to(acc)
    n = _count(m, x.shape, dims, acc)
    n1 = n.clamp_min(1)
    mean = xz.sum(dim=dims, keepdim=True) / n1
    # Two passes: the variance of the deviations from the mean, selected to the valid
    # elements. (The one-pass Σx² - n·mean² form loses all precision in float32 when
    # |mean| >> std, e.g. an error of 0.1 in the output for data around 1000.)
    dev = torch.where(m, xz - mean, torch.zeros((), dtype=acc, device=x.device))
    var = dev.square().sum(dim=dims, keepdim=True) / n1
    return xz, mean, var, n


def _affine_shape(x: Tensor, channel_dim: int = 1) -> list[int]:
    shape = [1] * x.dim()
    shape[channel_dim] = x.shape[channel_dim]
    return shape


def _finish(x: Tensor, m: Tensor, y: Tensor) -> Masked:
    y = torch.where(m, y, torch.zeros((), dtype=y.dtype, device=y.device)).to(x.dtype)
    return Masked(y, m)


def _normalize(
    xz: Tensor,
    mean: Tensor,
    var: Tensor,
    eps: float,
    weight: Tensor | None,
    bias: Tensor | None,
    shape: list[int],
) -> Tensor:
    """``(xz - mean) / sqrt(var + eps) · weight + bias`` as one fused multiply-add per element."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight.to(scale.dtype).reshape(shape)
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.to(scale.dtype).reshape(shape)
    return torch.addcmul(shift, xz, scale)


class _BatchNormTrain(torch.autograd.Function):
    """Masked batch normalization in training mode as one autograd node (float32/float64 data).

    forward: ``xz = select(x, mask)`` (bitwise, exact); per channel ``Σ xz`` gives the mean
    over the ``n`` valid elements, then the valid deviations from it (one temporary)
    the biased variance; torch's own batch-norm kernel (inference form, with these statistics)
    normalizes, and the output is selected in place. backward: the gradient is
    selected, torch's inference-form batch-norm backward gives ``dy·w·rstd``,
    ``Σ dy·x̂`` and ``Σ dy``, and the batch-statistics terms are added in place:
    ``dx = dy·w·rstd - w·rstd/n·(Σ dy + x̂·Σ dy·x̂)``, selected in place.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, mask: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c = x.shape[1]
        dims = (0, *range(2, x.dim()))
        xz = select_into(x.contiguous(), mask)
        n = _count(mask, x.shape, dims, x.dtype).reshape(-1).expand(c).contiguous()
        n1 = n.clamp_min(1)
        rows = xz.view(x.shape[0], c, -1)  # reductions over the contiguous last dimension are fastest
        mean = rows.sum(2).sum(0) / n1
        # Two passes (Σx²/n - mean² cancels catastrophically when |mean| >> std): the
        # deviations from the mean, selected to the valid elements, then their mean square.
        dev = xz - mean.reshape([1, c] + [1] * (x.dim() - 2))
        select_into(dev, mask, out=dev)
        sq = dev.square_().view(x.shape[0], c, -1).sum(2).sum(0)
        del dev
        var = sq / n1
        out = torch.native_batch_norm(xz, weight, bias, mean, var, False, 0.0, eps)[0]
        select_into(out, mask, out=out)
        ctx.save_for_backward(xz, mask, weight, mean, var, n1)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var, n)
        return out, mean, var, n

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        xz, mask, weight, mean, var, n1 = ctx.saved_tensors
        eps = ctx.eps
        w = weight if weight is not None else torch.ones_like(mean)
        dy = select_into(grad.contiguous(), mask)
        gi, gw, gb = torch.ops.aten.native_batch_norm_backward(
            dy, xz, w, mean, var, None, None, False, eps, [True, True, True]
        )
        rstd = torch.rsqrt(var + eps)
        k1 = w * rstd / n1  # dx = gi - k1 · (Σdy + x̂ · Σdy·x̂), x̂ = (xz - mean) · rstd
        k2 = k1 * rstd * gw
        shape = [1, -1] + [1] * (xz.dim() - 2)
        gi.addcmul_(xz, (-k2).reshape(shape))
        gi.add_((k2 * mean - k1 * gb).reshape(shape))
        select_into(gi, mask, out=gi)
        need_w = weight is not None and ctx.needs_input_grad[2]
        return gi, None, gw if need_w else None, gb if ctx.needs_input_grad[3] else None, None


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

    Example:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 3.0, 1e6]]])
        >>> m = torch.tensor([[[True, True, False]]])
        >>> masked_batch_norm(x, m, training=True, eps=0.0).data
        tensor([[[-1.,  1.,  0.]]])
    """
    op = "masked_batch_norm"
    x, m = _prepare(op, x, mask, 2)
    dims = (0, *range(2, x.dim()))
    shape = _affine_shape(x)
    if training and x.dtype in (torch.float32, torch.float64):
        y, mean, var, n = _BatchNormTrain.apply(x, m, weight, bias, eps)
        if running_mean is not None or running_var is not None:
            unbiased = var * n / (n - 1).clamp_min(1)
            _update(running_mean, running_var, mean, unbiased, n > 0, n > 1, momentum)
        return Masked(y, m)
    if training:  # half precision: statistics in float32
        xz, mean, var, n = _moments(x, m, dims)
        if running_mean is not None or running_var is not None:
            n = n.expand(mean.shape)
            unbiased = var.detach() * n / (n - 1).clamp_min(1)
            _update(running_mean, running_var, mean.detach(), unbiased, n > 0, n > 1, momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var are required when training=False")
        acc = acc_dtype(x)
        xz = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).to(acc)
        mean = running_mean.to(acc).reshape(shape)
        var = running_var.to(acc).reshape(shape)
    return _finish(x, m, _normalize(xz, mean, var, eps, weight, bias, shape))


@torch.no_grad()
def _update(
    running_mean: Tensor | None,
    running_var: Tensor | None,
    mean: Tensor,
    unbiased_var: Tensor,
    has_mean: Tensor,
    has_var: Tensor,
    momentum: float,
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

    As :func:`torch.nn.functional.instance_norm`. With ``use_input_stats`` and running
    statistics, these are updated with the mean over the instances that have a valid
    element (the variance of each instance unbiased by ``n / (n - 1)``).

    Example:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 3.0, float("nan")]]])
        >>> masked_instance_norm(x, ~x.isnan(), eps=0.0).data
        tensor([[[-1.,  1.,  0.]]])
    """
    op = "masked_instance_norm"
    x, m = _prepare(op, x, mask, 3)
    dims = tuple(range(2, x.dim()))
    shape = _affine_shape(x)
    if use_input_stats:
        xz, mean, var, n = _moments(x, m, dims)
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
        xz = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).to(acc)
        mean = running_mean.to(acc).reshape(shape)
        var = running_var.to(acc).reshape(shape)
    return _finish(x, m, _normalize(xz, mean, var, eps, weight, bias, shape))


def masked_group_norm(
    x: Tensor,
    mask: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Masked:
    """Group normalization of ``x`` ``(N, C, *)`` over the valid elements of each (sample, group).

    As :func:`torch.nn.functional.group_norm`.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[1.0], [3.0], [float("nan")], [5.0]]])
        >>> masked_group_norm(x, ~x.isnan(), 1, eps=0.0).data.flatten()
        tensor([-1.2247,  0.0000,  0.0000,  1.2247])
    """
    op = "masked_group_norm"
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
    xz, mean, var, _ = _moments(xg, mg, dims)
    scale = torch.rsqrt(var + eps)  # (N, G, 1, ...)
    wshape = [1, g, c // g] + [1] * len(spatial)
    if weight is not None:
        scale = scale * weight.to(scale.dtype).reshape(wshape)
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.to(scale.dtype).reshape(wshape)
    y = torch.addcmul(shift, xz, scale).reshape(x.shape)
    return _finish(x, m, y)


def masked_layer_norm(
    x: Tensor,
    mask: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Masked:
    """Layer normalization over the valid elements of the last ``len(normalized_shape)`` dimensions.

    As :func:`torch.nn.functional.layer_norm`. A sequence mask ``(N, T)`` for data
    ``(N, T, F)`` is taken as ``(N, T, 1)``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 3.0, float("nan")]])
        >>> masked_layer_norm(x, ~x.isnan(), 3, eps=0.0).data
        tensor([[-1.,  1.,  0.]])
    """
    op = "masked_layer_norm"
    x, m = _prepare(op, x, mask, 1, allow_sequence=True)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or x.dim() < k or tuple(x.shape[-k:]) != shape:
        raise ValueError(
            f"{op}: normalized_shape {shape} does not match the last dimensions of data shape "
            f"{shape_str(x.shape)}"
        )
    dims = tuple(range(x.dim() - k, x.dim()))
    xz, mean, var, _ = _moments(x, m, dims)
    y = (xz - mean) * torch.rsqrt(var + eps)
    if weight is not None and bias is not None:
        y = torch.addcmul(bias.to(y.dtype), y, weight.to(y.dtype))
    elif weight is not None:
        y = y * weight.to(y.dtype)
    elif bias is not None:
        y = y + bias.to(y.dtype)
    return _finish(x, m, y)
