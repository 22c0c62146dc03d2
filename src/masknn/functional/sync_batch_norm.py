"""Masked batch normalization synchronized across the processes of a ``torch.distributed`` group.

The statistics of each channel are taken over the valid elements of the *global*
batch, the union of every rank's batch: ``n`` (valid count), the mean and the
biased variance, computed exactly and stably, never as ``Σx²/n - mean²`` (which
loses every digit in float32 when ``|mean| >> std``):

* composable path, two all-reduces: the valid counts and sums give the global mean;
  each rank then sums the squared deviations of its valid values from that mean, and
  a second all-reduce gives the centred second moment ``M2``; ``var = M2 / n``. This
  is the two-pass computation of [`masknn.functional.masked_batch_norm`][] on the
  concatenated batch (only the order of the float additions differs);
* eager fast path, one all-gather: each rank's count ``n_r``, sum and centred moment
  ``M2_r`` (two local passes) are gathered and merged exactly (Chan, Golub and
  LeVeque): ``M2 = Σ M2_r + Σ n_r (mean_r - mean)²``.

Counts and sums accumulate in float32 for float16/bfloat16 data.

Backward: the gradient through the global statistics needs two per-channel sums of
the incoming gradient over the global batch, ``Σ dy`` and ``Σ dy·x̂`` (valid
elements only); each rank computes its part and they are all-reduced, as torch's
``SyncBatchNorm`` does. The weight and bias gradients stay per rank (local sums):
``DistributedDataParallel`` averages them like every other parameter gradient.

Two implementations, one function (see ``masknn.functional._select``):

* eager CPU (``fast_path``): one autograd node that
  selects bit by bit, normalizes with torch's batch-norm kernel and all-reduces the
  two gradient sums in one call (1 all-gather forward, 1 all-reduce backward);
* everywhere else (other devices, ``torch.compile``, ``torch.func`` transforms, a
  backward asked to build a graph): plain differentiable ops around a differentiable
  all-reduce whose backward is again an all-reduce (2 forward, 2 backward), so double
  backward works across ranks too.

Every rank of the group must make the same calls in the same order (the same
model, the same ``requires_grad`` on the input, all eager or all compiled), as with
any collective: the two paths do not pair up. A rank whose batch has no valid
element, or no sample at all, still takes part.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str, to_bool_mask
from masknn.functional._select import differentiable_backward, fast_path, select, select_into
from masknn.functional._spatial import acc_dtype
from masknn.functional.normalization import batch_norm, count_batch

__all__ = ["masked_sync_batch_norm"]

_OP = "masked_sync_batch_norm"


def _check_process_group(name: str, process_group: Any) -> None:
    """Raise a ``TypeError`` naming ``name`` unless ``process_group`` is ``None`` or a
    ``torch.distributed.ProcessGroup`` (a list of ranks or a device mesh is not).

    Examples:
        >>> _check_process_group("MyLayer", None)
    """
    if process_group is None:
        return
    if not dist.is_available():
        raise TypeError(f"{name}: got a process_group, but torch.distributed is not available in this build")
    if type(process_group) is int and process_group == dist.GroupMember.NON_GROUP_MEMBER:
        return  # what new_group returns on a rank outside the group: refused when used
    if not isinstance(process_group, dist.ProcessGroup):
        raise TypeError(
            f"{name}: expected process_group as None (all ranks) or a torch.distributed.ProcessGroup "
            f"(e.g. from torch.distributed.new_group(ranks)), got {type(process_group).__name__}"
        )


def _sync_world_size(process_group: Any = None, op: str = _OP) -> int:
    """The number of processes that synchronize statistics: 1 without an initialized process group.

    ``process_group`` ``None`` means the default (world) group. Raises a ``ValueError``
    when this process is not a member of ``process_group``.

    Examples:
        >>> _sync_world_size()  # no torch.distributed process group in this process
        1
    """
    _check_process_group(op, process_group)
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    group = dist.group.WORLD if process_group is None else process_group
    size = dist.get_world_size(group)
    if size < 1:
        raise ValueError(
            f"{op}: this process (global rank {dist.get_rank()}) is not a member of the "
            "process_group it was given; every rank that calls it must belong to the group"
        )
    return int(size)


class _AllReduceSum(torch.autograd.Function):
    """``all_reduce(SUM)`` as a differentiable op: its backward is the same all-reduce of the
    gradient (every rank's output depends on every rank's input), itself differentiable."""

    @staticmethod
    def forward(t: Tensor, group: Any) -> Tensor:
        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Any], output: Tensor) -> None:
        ctx.group = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _AllReduceSum.apply(grad, ctx.group), None


def _all_reduce_sum(t: Tensor, group: Any) -> Tensor:
    out: Tensor = _AllReduceSum.apply(t, group)
    return out


def _local_count(m: Tensor, shape: torch.Size, c: int, dtype: torch.dtype) -> Tensor:
    """Valid elements per channel ``(C,)`` of data ``shape``, without expanding a broadcast mask."""
    dims = (0, *range(2, len(shape)))
    factor = 1
    for d in dims:
        if m.shape[d] == 1:
            factor = factor * shape[d]  # a SymInt under dynamic shapes: no guard
    n = m.sum(dim=dims, dtype=dtype) * factor
    return n.expand(c) if m.shape[1] == 1 else n


def _composite(
    x: Tensor, m: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, group: Any
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Plain differentiable ops: ``(y, global mean, global biased var, global count)``."""
    c = x.shape[1]
    acc = acc_dtype(x)
    dims = (0, *range(2, x.dim()))
    shape = [1, c] + [1] * (x.dim() - 2)
    xz = select(x, m).to(acc)
    n_sum = _all_reduce_sum(torch.cat([_local_count(m, x.shape, c, acc), xz.sum(dims)]), group)
    n, total = n_sum[:c], n_sum[c:]
    n1 = n.clamp_min(1)
    mean = total / n1
    dev = select(xz - mean.reshape(shape), m)  # the valid deviations, 0 elsewhere
    var = _all_reduce_sum(dev.square().sum(dims), group) / n1
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight.to(acc)
    # (x - mean) · scale + bias as torch's kernel computes it: exact 0 for a lone valid value,
    # where the folded x · scale - mean · scale is off by |mean| · scale · ulp.
    # The output is selected even where dev is already 0: its backward then selects the incoming
    # gradient, so a NaN cotangent at a masked output reaches no statistic.
    if bias is None:
        y = dev * scale.reshape(shape)
    else:
        y = torch.addcmul(bias.to(acc).reshape(shape), dev, scale.reshape(shape))
    return select(y, m).to(x.dtype), mean, var, n.detach()


def _rows(t: Tensor) -> Tensor:
    """``(N, C, L)`` view of contiguous ``(N, C, *)`` data (reductions over the contiguous last
    dimension are fastest); unlike ``view(N, C, -1)`` it works for ``N = 0``."""
    return t.unsqueeze(2) if t.dim() == 2 else t.flatten(2)


class _SyncBatchNormTrain(torch.autograd.Function):
    """Eager-CPU fast path (float32/float64): one node, 1 all-gather forward, 1 all-reduce backward."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, m: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, group: Any
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c = x.shape[1]
        shape = [1, c] + [1] * (x.dim() - 2)
        xz = select_into(x.contiguous(), m)
        # This rank's count, sum and centred second moment (two local passes), gathered from
        # every rank in one collective and merged exactly (Chan et al.): the global M2 is
        # Σ M2_r + Σ n_r (mean_r - mean)², differences of means, never of large squares.
        n_r = _local_count(m, x.shape, c, x.dtype)
        s_r = _rows(xz).sum(2).sum(0)
        dev = xz - (s_r / n_r.clamp_min(1)).reshape(shape)
        select_into(dev, m, out=dev)
        m2_r = _rows(dev.square_()).sum(2).sum(0)
        del dev
        local = torch.cat([n_r, s_r, m2_r])
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, local, group=group)
        n_all, s_all, m2_all = torch.stack(parts).split(c, dim=1)  # (ranks, C) each
        n = n_all.sum(0)
        n1 = n.clamp_min(1)
        mean = s_all.sum(0) / n1
        spread = n_all * (s_all / n_all.clamp_min(1) - mean).square()
        var = (m2_all.sum(0) + spread.sum(0)) / n1
        out = torch.native_batch_norm(xz, weight, bias, mean, var, False, 0.0, eps)[0]
        select_into(out, m, out=out)
        ctx.save_for_backward(x, m, weight, bias, xz, mean, var, n1)
        ctx.eps = eps
        ctx.group = group
        ctx.mark_non_differentiable(mean, var, n)
        return out, mean, var, n

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        x, m, weight, bias, xz, mean, var, n1 = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled() or not fast_path(grad):
            # A graph of the backward is asked for (double backward) or the gradient is
            # batched/traced: differentiate the plain-op composite (collectives included).
            def composite(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
                return _composite(x, m, weight, bias, ctx.eps, ctx.group)[0]

            gx, gw, gb = differentiable_backward(
                composite, (x, weight, bias), (grad,), (needs[0], needs[2], needs[3])
            )
            return gx, None, gw, gb, None, None
        eps = ctx.eps
        w = weight if weight is not None else torch.ones_like(mean)
        dy = select_into(grad.contiguous(), m)
        if xz.numel() == 0:  # an empty batch on this rank (aten's kernel would divide by 0)
            gi, gw, gb = torch.zeros_like(xz), torch.zeros_like(mean), torch.zeros_like(mean)
        else:
            gi, gw, gb = torch.ops.aten.native_batch_norm_backward(
                dy, xz, w, mean, var, None, None, False, eps, [needs[0], True, True]
            )
        if needs[0]:
            # Σdy and Σdy·x̂ over the global batch; gw and gb stay the local sums (the
            # parameter gradients of this rank, which DDP averages).
            sums = torch.cat([gb, gw])
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=ctx.group)
            c = mean.shape[0]
            sum_dy, sum_dy_xhat = sums[:c], sums[c:]
            rstd = torch.rsqrt(var + eps)
            k1 = w * rstd / n1  # dx = dy·w·rstd - k1 · (Σdy + x̂ · Σdy·x̂), x̂ = (xz - mean) · rstd
            k2 = k1 * rstd * sum_dy_xhat
            shape = [1, -1] + [1] * (xz.dim() - 2)
            gi.addcmul_(xz, (-k2).reshape(shape))
            gi.add_((k2 * mean - k1 * sum_dy).reshape(shape))
            select_into(gi, m, out=gi)
        need_w = weight is not None and needs[2]
        need_b = bias is not None and needs[3]
        return gi if needs[0] else None, None, gw if need_w else None, gb if need_b else None, None, None


def masked_sync_batch_norm(
    x: Tensor,
    mask: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
    process_group: Any = None,
) -> Masked:
    """Training-mode batch normalization of ``x`` ``(N, C, *)`` over the valid elements of
    the global batch, the union of the batches of every rank in ``process_group``.

    Each channel's mean and biased variance are those of
    [`masknn.functional.masked_batch_norm`][] on the concatenation of every rank's
    batch. ``running_mean``/``running_var`` (when given) are updated in place from the
    global statistics, identically on every rank: the variance unbiased by
    ``n / (n - 1)`` with the global ``n``; a channel with no valid element on any rank
    is left as it is, one with a single valid element updates its mean only. A rank
    whose batch holds no valid element (or no sample) takes part with zero counts.

    ``process_group`` ``None`` is the default group. Without an initialized process
    group, or with a group of one process, this is
    ``masked_batch_norm(..., training=True)`` and communicates nothing. Inference with
    running statistics needs no communication: call
    [`masknn.functional.masked_batch_norm`][] with ``training=False``.

    Every rank of the group must call it (collectives), with the same ``C``, dtype and
    ``requires_grad`` on ``x``; the input gradient accounts for the losses of every rank.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 3.0, float("nan")]]])
        >>> masked_sync_batch_norm(x, ~x.isnan(), eps=0.0).data  # one process: as masked_batch_norm
        tensor([[[-1.,  1.,  0.]]])
    """
    return sync_batch_norm(
        _OP, x, mask, running_mean, running_var, weight, bias, momentum, eps, process_group
    )


def sync_batch_norm(
    op: str,
    x: Tensor,
    mask: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    momentum: float | None,
    eps: float,
    process_group: Any,
    num_batches_tracked: Tensor | None = None,
) -> Masked:
    """``masked_sync_batch_norm`` with errors naming ``op``, and the Module's batch counter.

    ``num_batches_tracked`` (when given) is incremented when the *global* batch holds a
    valid element (the same on every rank); ``momentum=None`` is then the cumulative
    average over those batches (see ``masknn.functional.normalization.count_batch``).
    """
    x = check_data(op, x)
    if x.dim() < 2:
        raise ValueError(
            f"{op}: expected data (N, C, *) with at least 2 dimensions, got {shape_str(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{op}: expected floating point data, got dtype {x.dtype}")
    m = to_bool_mask(op, x, mask, allow_sequence=False)
    if _sync_world_size(process_group, op) == 1:
        return batch_norm(
            op, x, m, running_mean, running_var, weight, bias, True, momentum, eps, num_batches_tracked
        )
    group = dist.group.WORLD if process_group is None else process_group
    # The path must be the same on every rank (their collectives pair up): it depends only
    # on dtype, device and mode, which the ranks of one model share, never on the data.
    if x.dtype in (torch.float32, torch.float64) and fast_path(x, m, weight, bias):
        y, mean, var, n = _SyncBatchNormTrain.apply(x, m, weight, bias, eps, group)
    else:
        y, mean, var, n = _composite(x, m, weight, bias, eps, group)
    if running_mean is not None or running_var is not None or num_batches_tracked is not None:
        with torch.no_grad():
            factor = count_batch(num_batches_tracked, n.detach(), momentum)  # n: the global counts
            if running_mean is not None or running_var is not None:
                _update_running(running_mean, running_var, mean.detach(), var.detach(), n, factor)
    return Masked(y, m)


@torch.no_grad()
def _update_running(
    running_mean: Tensor | None,
    running_var: Tensor | None,
    mean: Tensor,
    var: Tensor,
    n: Tensor,
    momentum: float | Tensor,
) -> None:
    """Move the running statistics toward the global ones where a channel had valid elements."""
    if running_mean is not None:
        new = torch.lerp(running_mean, mean.to(running_mean.dtype), momentum)
        running_mean.copy_(torch.where(n > 0, new, running_mean))
    if running_var is not None:
        unbiased = (var * n / (n - 1).clamp_min(1)).to(running_var.dtype)
        new = torch.lerp(running_var, unbiased, momentum)
        running_var.copy_(torch.where(n > 1, new, running_var))
