"""Masked losses: reduced over valid elements only.

Each loss takes ``(input, target, mask, reduction="mean")``. ``input`` and
``target`` may also be [`Masked`][masknn.Masked] (their masks are combined with
``mask`` by logical and). Masked elements of either (NaN, Inf, garbage class
indices included) never reach the loss nor receive a gradient. With
``reduction="mean"`` the sum is divided by the number of valid elements; a batch
with no valid element gives a loss of exactly 0 (not NaN). ``reduction="none"``
returns the per-element loss with exactly 0 at masked elements (and a NaN or Inf
cotangent there reaches no gradient).

Dtypes follow the plain losses: under ``torch.autocast`` the losses run in float32,
as ``F.mse_loss`` and the others do (CPU and CUDA autocast cast them to float32).

Every loss is plain differentiable torch ops (``torch.compile``, ``torch.export``,
ONNX, ``torch.func``, double backward). On eager CPU, the losses of the difference
``input - target`` (MSE, L1, smooth L1) run a fused node instead: the difference is
selected in place and reduced in one pass. With ``reduction="sum"`` or ``"mean"`` that
pass also leaves the gradient for a unit cotangent (``f'(d)``, computed while each chunk
is in cache), so the backward of ``loss.backward()`` makes no pass over the data (one
multiplication for another cotangent); with ``"none"`` the backward is one pass. A
backward with ``create_graph=True`` re-runs the plain composite (so double backward works).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import (
    OutOfRangeError,
    check_data,
    check_number,
    eager_checks,
    shape_str,
    to_bool_mask,
)
from masknn.functional._select import differentiable_backward, fast_path, select, select_into

__all__ = [
    "masked_binary_cross_entropy_with_logits",
    "masked_cross_entropy",
    "masked_l1_loss",
    "masked_mse_loss",
    "masked_smooth_l1_loss",
]

_REDUCTIONS = ("none", "sum", "mean")
_FAST_DTYPES = (torch.float32, torch.float64)


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _autocast_fp32(*ts: Tensor) -> tuple[Tensor, ...]:
    """Under autocast, the plain losses run in float32: do the same."""
    if not ts or not torch.is_autocast_enabled(ts[0].device.type):
        return ts
    return tuple(t.float() if t.is_floating_point() else t for t in ts)


def _unpack(
    op: str, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """(input, target, valid): ``valid`` is bool and broadcasts to the input (never expanded)."""
    masks: list[tuple[Tensor, Tensor]] = []
    if isinstance(input, Masked):
        masks.append((input.data, input.mask))
        input = input.data
    if isinstance(target, Masked):
        masks.append((target.data, target.mask))
        target = target.data
    input = check_data(op, input)
    target = check_data(op, target)
    if input.shape != target.shape:
        raise ValueError(
            f"{op}: input shape {shape_str(input.shape)} and target shape "
            f"{shape_str(target.shape)} differ; expected the same shape"
        )
    if not input.is_floating_point():
        raise TypeError(f"{op}: expected floating point input, got dtype {input.dtype}")
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"{op}: expected a real-valued target, got dtype {target.dtype}")
    if mask is not None:
        masks.append((input, mask))
    if not masks:
        raise TypeError(f"{op}: expected a mask (or a masknn.Masked input or target)")
    valid = to_bool_mask(op, masks[0][0], masks[0][1])
    for data, m in masks[1:]:
        valid = valid & to_bool_mask(op, data, m)
    return input, target, valid


def _count(valid: Tensor, numel: int) -> Tensor:
    """Number of valid elements (int64, 0-d) of a mask broadcast to ``numel`` elements."""
    c = valid.sum(dtype=torch.int64)
    if valid.numel() == numel:  # guards on shapes only, never on a size's value
        return c
    return c * (numel // valid.numel())


def _eager_count(valid: Tensor, numel: int) -> int:
    """``_count`` as a Python int, for the eager fast path: summed in int32 where it cannot
    overflow (half the bytes of int64: 76 us instead of 159 us for a million elements)."""
    dtype = torch.int32 if valid.numel() < 2**31 else torch.int64
    return int(valid.sum(dtype=dtype)) * (numel // max(valid.numel(), 1))


def _reduce(elem: Tensor, valid: Tensor, reduction: str) -> Tensor:
    """Reduce a per-element loss that is already exactly 0 at masked elements."""
    if reduction == "none":
        return elem
    acc = torch.float32 if elem.dtype in (torch.float16, torch.bfloat16) else elem.dtype
    total = elem.sum(dtype=acc)
    if reduction == "mean":
        # The total is 0 when nothing is valid: 0 / 1 = 0, never NaN.
        total = total / _count(valid, elem.numel()).clamp_min(1).to(acc)
    return total.to(elem.dtype)


# ---------------------------------------------------------------- losses of d = input - target
def _elem_of_diff(kind: str, d: Tensor, beta: float) -> Tensor:
    """The per-element loss of the difference ``d`` (0 where ``d`` is 0), plain ops."""
    if kind == "mse":
        return d * d
    if kind == "l1":
        return d.abs()
    return F.smooth_l1_loss(d, torch.zeros_like(d), reduction="none", beta=beta)


def _bce_elem(x: Tensor, t: Tensor, pos_weight: Tensor | None) -> Tensor:
    pw = pos_weight.to(x.dtype) if pos_weight is not None else None
    return F.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=pw)


def _loss_composite(
    x: Tensor,
    t: Tensor,
    valid: Tensor,
    kind: str,
    beta: float,
    reduction: str,
    pos_weight: Tensor | None = None,
) -> Tensor:
    """The loss in plain differentiable ops (the composable path)."""
    if kind == "bce":
        # Select the inputs (masked values never reach the loss, so its gradient is finite)
        # and the output (the loss of (0, 0) is log 2, not 0; this select also stops a NaN
        # cotangent at a masked element).
        elem = select(_bce_elem(select(x, valid), select(t, valid), pos_weight), valid)
    else:
        elem = _elem_of_diff(kind, select(x - t, valid), beta)
    return _reduce(elem, valid, reduction)


#: Elements per chunk of the fused losses (2 MB of float32): a chunk's buffers stay in the
#: last-level cache, and fewer chunks cost fewer small ops. Measured against 1 << 17 .. 1 << 20
#: on (16, 3, 256, 256) and (64, 3, 64, 64), training and inference (RESULTS.md, round 3).
_CHUNK = 1 << 19


def _chunks(n: int, numel: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK // max(1, numel // max(n, 1)))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _grad_factors(
    kind: str, beta: float, count: int, reduction: str, dtype: torch.dtype
) -> tuple[float, float]:
    """(divisor, multiplier) that turn ``d``, ``sign(d)`` or ``clamp(d, -β, β)`` into d loss / d input
    for a unit cotangent: ``2 / count`` for the mean squared error, ``1 / (β count)`` for smooth L1
    (the divisor β kept apart only where ``1 / β`` overflows ``dtype``)."""
    div, mul = 1.0, 1.0 / max(count, 1) if reduction == "mean" else 1.0
    if kind == "mse":
        mul *= 2.0
    elif kind == "smooth_l1" and beta > 0:
        if mul / beta <= torch.finfo(dtype).max:
            mul /= beta
        else:
            div = beta
    return div, mul


def _scale_(g: Tensor, factors: tuple[float, float]) -> None:
    """In place: ``g / divisor * multiplier`` (0 stays 0)."""
    div, mul = factors
    if div != 1.0:
        g.div_(div)
    if mul != 1.0:
        g.mul_(mul)


#: ``F.smooth_l1_loss(..., reduction="none")`` writing into a given buffer (reduction 0 = none).
_SMOOTH_L1: Any = torch._C._nn.smooth_l1_loss


def _fused_elem_sum(
    kind: str,
    x: Tensor,
    t: Tensor,
    valid: Tensor,
    beta: float,
    keep: Tensor | None,
    factors: tuple[float, float] = (1.0, 1.0),
) -> Tensor:
    """Sum over the batch of the selected per-element loss, chunk by chunk along dim 0.

    Per chunk (in cache): ``d = x - t`` selected in place (``select_into``), then the
    loss: ``d·d`` (MSE), ``Σ|d|`` (L1), the smooth L1 sum. When the backward needs it,
    ``f'(d)`` (``d``, ``s = sign(d)``, ``clamp(d, -β, β)``)
    is written into ``keep`` (full size) and scaled by ``factors`` (from ``_grad_factors``:
    the gradient for a unit cotangent, the mean's ``1 / count`` folded in), exactly 0 at
    masked elements (``f'(0) = 0``); the L1 sum is then ``s·d`` (one read instead of an
    ``abs`` and a sum). Otherwise one small buffer is reused.

    Measured per 768 KB chunk in L2 (``benchmarks/RESULTS.md``, round 3): the smooth L1
    sum (one fused kernel) beats ``clamp`` + two dot products; ``sign`` + a dot beats
    ``abs().sum()`` only when the sign is needed anyway.
    """
    n = int(x.shape[0])
    ranges = _chunks(n, x.numel())
    shape = (ranges[0][1], *x.shape[1:])
    parts: list[Tensor] = []
    buf = None if kind == "bce" or keep is not None else torch.empty(shape, dtype=x.dtype)
    aux = torch.empty(shape, dtype=x.dtype) if keep is not None and kind in ("l1", "smooth_l1") else None
    for i, j in ranges:
        b = valid if valid.shape[0] == 1 else valid[i:j]  # this chunk's mask (or the batch-shared one)
        if kind == "bce" or (kind == "smooth_l1" and keep is None and beta > 0):
            # The per-element loss straight from x and t, selected in place (masked elements
            # exactly 0 whatever they hold), summed. For smooth L1 (inference) into the buffer:
            # one pass fewer than selecting d first (the loss kernel writes its own temporary).
            if kind == "bce":
                e = F.binary_cross_entropy_with_logits(x[i:j], t[i:j], reduction="none")
            else:
                e = _SMOOTH_L1(x[i:j], t[i:j], 0, beta, out=buf[: j - i])  # type: ignore[index]
            parts.append(select_into(e, b, out=e).sum())
            continue
        # d in ``keep`` for MSE (its own derivative), else in a small buffer
        if keep is None:
            d = buf[: j - i]  # type: ignore[index]
        else:
            d = keep[i:j] if kind == "mse" else aux[: j - i]  # type: ignore[index]
        select_into(torch.sub(x[i:j], t[i:j], out=d), b, out=d)
        flat = d.view(-1)
        if kind == "mse":
            parts.append(torch.dot(flat, flat))
        elif kind == "l1" or beta == 0:
            if keep is None:
                parts.append(flat.abs().sum())
            else:
                torch.sign(d, out=keep[i:j])
                parts.append(torch.dot(keep[i:j].view(-1), flat))  # s·d = Σ|d|
        else:
            zeros = torch.zeros((), dtype=d.dtype).expand(flat.shape)
            parts.append(F.smooth_l1_loss(flat, zeros, reduction="sum", beta=beta))
            if keep is not None:
                torch.clamp(d, -beta, beta, out=keep[i:j])
        if keep is not None:
            _scale_(keep[i:j], factors)
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum()


class _FusedLoss(torch.autograd.Function):
    """Eager-CPU fused masked loss (MSE, L1, smooth L1 of ``d = x - t``; BCE with logits).

    Forward: the loss of each chunk of the batch is computed, selected in place (bitwise)
    and reduced while it is in cache. For the reductions ``"sum"`` and ``"mean"`` the
    forward also turns each chunk of ``d``, still in cache, into the gradient for a unit
    cotangent (``f'(d)``, the mean's ``1 / count`` folded in). The first backward then
    hands that buffer out (multiplied in place by the cotangent unless it is 1): no pass
    at all for ``loss.backward()``. A later backward of the same graph
    (``retain_graph=True``) recomputes it from the saved inputs. For ``reduction="none"``
    the backward is one pass over the saved selected difference, selected again (a NaN
    or Inf cotangent at a masked element reaches nothing). With ``create_graph=True``
    the backward re-runs the plain composite (``differentiable_backward``).
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, t: Tensor, valid: Tensor, kind: str, beta: float, reduction: str
    ) -> Tensor:
        ctx.args = (kind, beta, reduction)
        ctx.unit = None
        need = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        if reduction == "none":
            if kind == "bce":
                out = F.binary_cross_entropy_with_logits(x, t, reduction="none")
                ctx.save_for_backward(x, t, valid)
                return select_into(out, valid, out=out)
            d = torch.sub(x, t)
            select_into(d, valid, out=d)
            ctx.save_for_backward(x, t, valid, d)
            return _elem_of_diff(kind, d, beta)
        count = _eager_count(valid, x.numel())
        keep, factors = None, (1.0, 1.0)
        if need and kind != "bce":
            keep = torch.empty(x.shape, dtype=x.dtype)
            factors = _grad_factors(kind, beta, count, reduction, x.dtype)
        total = _fused_elem_sum(kind, x, t, valid, beta, keep, factors)
        # The unit gradient is an attribute, not a saved tensor: the first backward hands it out
        # (and may scale it in place); autograd's version check would then refuse a second one.
        ctx.unit = keep
        ctx.save_for_backward(x, t, valid)
        if reduction == "mean":
            total = total / max(count, 1)  # as the composite's division by the count in x's dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        x, t, valid = saved[:3]
        kind, beta, reduction = ctx.args
        need_x, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled() or not fast_path(grad):

            def composite(a: Tensor, b: Tensor) -> Tensor:
                return _loss_composite(a, b, valid, kind, beta, reduction)

            gx, gt = differentiable_backward(composite, (x, t), (grad,), (need_x, need_t))
            return gx, gt, None, None, None, None
        if reduction != "none" and kind != "bce":
            gd = ctx.unit
            ctx.unit = None  # handed out once
            if gd is None:  # a second backward (retain_graph=True): the same, recomputed
                gd = torch.empty(x.shape, dtype=x.dtype)
                factors = _grad_factors(kind, beta, int(_count(valid, x.numel())), reduction, x.dtype)
                _fused_elem_sum(kind, x, t, valid, beta, gd, factors)
            if bool(grad != 1):
                gd.mul_(grad)  # a finite cotangent keeps the exact zeros at masked elements
            if not need_x:
                return None, gd.neg_(), None, None, None, None
            return gd, (gd.neg() if need_t else None), None, None, None, None
        if reduction == "mean":
            grad = grad / _count(valid, x.numel()).clamp_min(1).to(grad.dtype)
        if kind == "bce":  # d loss / dx = (sigmoid(x) - t) * grad ; d loss / dt = -x * grad
            gx = gt = None
            if need_x:
                gx = torch.sigmoid(x).sub_(t).mul_(grad)
                select_into(gx, valid, out=gx)
            if need_t:
                gt = torch.mul(x, grad).neg_()
                select_into(gt, valid, out=gt)
            return gx, gt, None, None, None, None
        d = saved[3]
        # f'(d) * grad, selected: a NaN/Inf cotangent at a masked element reaches no gradient.
        if kind == "mse":
            gd = d * (grad * 2.0)
        elif kind == "smooth_l1" and beta > 0:  # clamp(d, -beta, beta) / beta: d / beta or sign(d)
            gd = torch.clamp(d, -beta, beta).mul_(grad / beta)
        else:
            gd = torch.sign(d).mul_(grad)
        select_into(gd, valid, out=gd)
        return (gd if need_x else None), (gd.neg() if need_t else None), None, None, None, None


def loss(
    op: str,
    kind: str,
    input: Tensor | Masked,
    target: Tensor | Masked,
    mask: Tensor | None,
    reduction: str,
    beta: float = 1.0,
    pos_weight: Tensor | None = None,
) -> Tensor:
    _check_reduction(op, reduction)
    if kind == "smooth_l1":
        check_number(op, "beta", beta, 0.0)
    x, t, valid = _unpack(op, input, target, mask)
    if kind == "bce" and not t.is_floating_point():
        raise TypeError(
            f"{op}: expected a floating point target (probabilities in [0, 1]), got dtype {t.dtype}; "
            "convert it with target.float()"
        )
    x, t = _autocast_fp32(x, t)
    if (
        fast_path(x, t, valid)  # first: nothing below is evaluated under a tracer
        and pos_weight is None
        and x.dtype in _FAST_DTYPES
        and t.dtype == x.dtype
        and x.dim() > 0
        and x.numel() > 0
    ):
        out: Tensor = _FusedLoss.apply(x, t, valid, kind, float(beta), reduction)
        return out
    return _loss_composite(x, t, valid, kind, float(beta), reduction, pos_weight)


def masked_mse_loss(
    input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Mean squared error over valid elements.

    Examples:
        >>> import torch
        >>> pred = torch.tensor([1.0, 2.0, 3.0])
        >>> target = torch.tensor([1.0, float("nan"), 5.0])
        >>> masked_mse_loss(pred, target, ~target.isnan())
        tensor(2.)
    """
    return loss("masked_mse_loss", "mse", input, target, mask, reduction)


def masked_l1_loss(
    input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Mean absolute error over valid elements.

    Examples:
        >>> import torch
        >>> pred = torch.tensor([1.0, 2.0, 3.0])
        >>> target = torch.tensor([2.0, float("nan"), 6.0])
        >>> masked_l1_loss(pred, target, ~target.isnan())
        tensor(2.)
    """
    return loss("masked_l1_loss", "l1", input, target, mask, reduction)


def masked_smooth_l1_loss(
    input: Tensor | Masked,
    target: Tensor | Masked,
    mask: Tensor | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """Smooth L1 (Huber-like) loss over valid elements, as ``F.smooth_l1_loss``.

    Examples:
        >>> import torch
        >>> pred = torch.tensor([0.5, 2.0, 3.0])
        >>> target = torch.tensor([0.0, float("nan"), 6.0])
        >>> masked_smooth_l1_loss(pred, target, ~target.isnan(), reduction="none")
        tensor([0.1250, 0.0000, 2.5000])
    """
    return loss("masked_smooth_l1_loss", "smooth_l1", input, target, mask, reduction, beta)


def masked_binary_cross_entropy_with_logits(
    input: Tensor | Masked,
    target: Tensor | Masked,
    mask: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy on logits over valid elements, as ``F.binary_cross_entropy_with_logits``.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([0.0, float("nan")])
        >>> target = torch.tensor([1.0, 1.0])
        >>> masked_binary_cross_entropy_with_logits(logits, target, torch.tensor([True, False]))
        tensor(0.6931)
    """
    return bce("masked_binary_cross_entropy_with_logits", input, target, mask, reduction, pos_weight)


def bce(
    op: str,
    input: Tensor | Masked,
    target: Tensor | Masked,
    mask: Tensor | None,
    reduction: str,
    pos_weight: Tensor | None,
) -> Tensor:
    """``masked_binary_cross_entropy_with_logits`` with errors naming ``op``."""
    if pos_weight is not None:
        pos_weight = check_data(op, pos_weight)
        if not pos_weight.is_floating_point():
            raise TypeError(f"{op}: expected a floating point pos_weight, got dtype {pos_weight.dtype}")
        x_shape = (input.data if isinstance(input, Masked) else check_data(op, input)).shape
        try:
            torch.broadcast_shapes(pos_weight.shape, x_shape)
        except RuntimeError:
            raise ValueError(
                f"{op}: pos_weight {shape_str(pos_weight.shape)} does not broadcast to the input "
                f"{shape_str(x_shape)}; expected one weight per class along the last dimension"
            ) from None
    return loss(op, "bce", input, target, mask, reduction, pos_weight=pos_weight)


def masked_cross_entropy(
    input: Tensor | Masked,
    target: Tensor,
    mask: Tensor | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    class_dim: int = 1,
) -> Tensor:
    """Cross-entropy of logits against class indices at valid positions.

    Two layouts, chosen explicitly by ``class_dim`` (a shape alone can be ambiguous,
    e.g. ``T == C``):

    * ``class_dim=1`` (default, as ``F.cross_entropy``): logits ``(N, C, *)``, target
      ``(N, *)``, e.g. ``(N, C, T)`` or ``(N, C, H, W)``;
    * ``class_dim=-1`` (as Keras, and a per-timestep ``Linear`` head): logits
      ``(N, T, C)`` (any ``(N, *, C)``), target ``(N, T)``.

    ``mask`` fits the target (each dimension equal or 1); a mask shaped like the
    logits with size 1 along the class dimension is accepted too. Targets equal to
    ``ignore_index`` count as masked. With a ``Masked`` input, a position is valid
    when all its class logits are. Masked targets may hold any integer.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [float("nan"), 1.0]])
        >>> target = torch.tensor([0, 7])
        >>> loss = masked_cross_entropy(logits, target, torch.tensor([True, False]))
        >>> round(float(loss), 4)
        0.1269
        >>> per_step = torch.randn(2, 5, 3)  # (N, T, C) from a per-timestep Linear
        >>> steps = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
        >>> masked_cross_entropy(per_step, torch.zeros(2, 5, dtype=torch.long), steps, class_dim=-1).shape
        torch.Size([])
    """
    return cross_entropy(
        "masked_cross_entropy", input, target, mask, reduction, label_smoothing, ignore_index, class_dim
    )


def cross_entropy(
    op: str,
    input: Tensor | Masked,
    target: Tensor,
    mask: Tensor | None,
    reduction: str,
    label_smoothing: float,
    ignore_index: int,
    class_dim: int,
) -> Tensor:
    """``masked_cross_entropy`` with errors naming ``op``."""
    _check_reduction(op, reduction)
    valid_in: Tensor | None = None
    if isinstance(input, Masked):
        data = check_data(op, input.data)
        valid_in = input.full_mask()
        input = data
    input = check_data(op, input)
    target = check_data(op, target)
    nd = input.dim()
    if not isinstance(class_dim, int) or not -max(nd, 1) <= class_dim < max(nd, 1):
        raise OutOfRangeError(
            f"{op}: class_dim {class_dim!r} is out of range for logits {shape_str(input.shape)}; "
            "expected 1 for (N, C, *) logits or -1 for (N, *, C)"
        )
    cd = class_dim % max(nd, 1)
    if nd > 1 and cd == 0:
        raise ValueError(f"{op}: class_dim must not be the batch dimension 0; expected 1 or -1")
    if nd > 1 and cd != 1:
        input = input.movedim(cd, 1)
        valid_in = valid_in.movedim(cd, 1) if valid_in is not None else None
    expected = (input.shape[0], *input.shape[2:]) if nd > 1 else ()
    if nd < 1 or tuple(target.shape) != tuple(expected):
        want = "(N, C, *) and target (N, *)" if cd == 1 else "(N, *, C) and target (N, *)"
        hint = ""
        if cd == 1 and nd == 3 and tuple(target.shape) == (input.shape[0], input.shape[1]):
            hint = "; for per-timestep logits (N, T, C) with target (N, T), pass class_dim=-1"
        raise ValueError(
            f"{op}: expected logits {want} (class_dim={class_dim}); got input "
            f"{shape_str(input.shape if cd == 1 else input.movedim(1, cd).shape)} and target "
            f"{shape_str(target.shape)}{hint}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"{op}: expected integer class indices as target, got {target.dtype} (class probabilities "
            "as target are not supported)"
        )
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        raise TypeError(f"{op}: expected label_smoothing as a number, got {label_smoothing!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must lie in [0, 1], got {label_smoothing}")
    if not input.is_floating_point():
        raise TypeError(f"{op}: expected floating point logits, got dtype {input.dtype}")
    (input,) = _autocast_fp32(input)
    valid = target != ignore_index
    if mask is not None:
        if isinstance(mask, Tensor) and mask.dim() == nd and nd > 1 and mask.shape[class_dim] == 1:
            mask = mask.squeeze(class_dim)
        valid = valid & to_bool_mask(op, target, mask, allow_sequence=False)
    if valid_in is not None:
        valid = valid & (valid_in.all(dim=1) if nd > 1 else valid_in)
    chan = valid.unsqueeze(1) if nd > 1 else valid
    x = select(input, chan)
    t = torch.where(valid, target, torch.zeros((), dtype=target.dtype, device=target.device))
    if eager_checks(t) and t.numel() > 0:  # torch raises IndexError/RuntimeError without the layer
        c = input.shape[1] if nd > 1 else input.shape[0]
        lo, hi = torch.aminmax(t)
        if int(lo) < 0 or int(hi) >= c:
            bad = int(lo) if int(lo) < 0 else int(hi)
            raise OutOfRangeError(
                f"{op}: target holds class index {bad} at a valid position, expected indices in "
                f"[0, {c}) for {c} classes (or ignore_index={ignore_index}, or a False mask there); "
                "torch raises IndexError: Target is out of bounds"
            )
    # F.cross_entropy's formula, written out (log-softmax, gather, smoothing) so that every
    # exporter sees plain ops (the ONNX translation of label smoothing differs from torch's).
    logp = x.log_softmax(1 if nd > 1 else 0)
    if nd > 1:
        elem = -logp.gather(1, t.unsqueeze(1)).squeeze(1)
    else:
        elem = -logp.gather(0, t.reshape(1)).reshape(())
    if label_smoothing > 0:
        elem = (1.0 - label_smoothing) * elem - label_smoothing * logp.mean(1 if nd > 1 else 0)
    return _reduce(select(elem, valid), valid, reduction)
