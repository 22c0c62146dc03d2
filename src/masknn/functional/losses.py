"""Masked losses: reduced over valid elements only.

Each loss takes ``(input, target, mask, reduction="mean")``. ``input`` and
``target`` may also be [`Masked`][masknn.Masked] (their masks are combined with
``mask`` by logical and). Masked elements of either (NaN, Inf, garbage class
indices included) never reach the loss nor receive a gradient. With
``reduction="mean"`` the sum is divided by the number of valid elements; a batch
with no valid element gives a loss of exactly 0 (not NaN). ``reduction="none"``
returns the per-element loss with exactly 0 at masked elements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str, to_bool_mask
from masknn.functional._spatial import select

__all__ = [
    "masked_binary_cross_entropy_with_logits",
    "masked_cross_entropy",
    "masked_l1_loss",
    "masked_mse_loss",
    "masked_smooth_l1_loss",
]

_REDUCTIONS = ("none", "sum", "mean")


def _unpack(
    op: str, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
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
    if mask is not None:
        masks.append((input, mask))
    if not masks:
        raise TypeError(f"{op}: expected a mask (or a masknn.Masked input or target)")
    valid = torch.ones((), dtype=torch.bool, device=input.device)
    for data, m in masks:
        valid = valid & to_bool_mask(op, data, m)
    return input, target, valid.expand(input.shape)


def _reduce(op: str, elem: Tensor, valid: Tensor, reduction: str) -> Tensor:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    elem = select(elem, valid)  # torch.where(valid, elem, 0), bit by bit (2-5x faster on CPU)
    if reduction == "none":
        return elem
    acc = torch.float32 if elem.dtype in (torch.float16, torch.bfloat16) else elem.dtype
    total = elem.to(acc).sum()
    if reduction == "sum":
        return total.to(elem.dtype)
    count = valid.sum().to(acc)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total)).to(elem.dtype)


def _elementwise(
    op: str,
    input: Tensor | Masked,
    target: Tensor | Masked,
    mask: Tensor | None,
    reduction: str,
) -> tuple[Tensor, Tensor, Tensor]:
    x, t, valid = _unpack(op, input, target, mask)
    return select(x, valid), select(t, valid), valid


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
    x, t, valid = _elementwise("masked_mse_loss", input, target, mask, reduction)
    return _reduce("masked_mse_loss", F.mse_loss(x, t, reduction="none"), valid, reduction)


def masked_l1_loss(
    input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Mean absolute error over valid elements."""
    x, t, valid = _elementwise("masked_l1_loss", input, target, mask, reduction)
    return _reduce("masked_l1_loss", F.l1_loss(x, t, reduction="none"), valid, reduction)


def masked_smooth_l1_loss(
    input: Tensor | Masked,
    target: Tensor | Masked,
    mask: Tensor | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """Smooth L1 (Huber-like) loss over valid elements, as ``F.smooth_l1_loss``."""
    x, t, valid = _elementwise("masked_smooth_l1_loss", input, target, mask, reduction)
    elem = F.smooth_l1_loss(x, t, reduction="none", beta=beta)
    return _reduce("masked_smooth_l1_loss", elem, valid, reduction)


def masked_binary_cross_entropy_with_logits(
    input: Tensor | Masked,
    target: Tensor | Masked,
    mask: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy on logits over valid elements, as ``F.binary_cross_entropy_with_logits``."""
    op = "masked_binary_cross_entropy_with_logits"
    x, t, valid = _elementwise(op, input, target, mask, reduction)
    elem = F.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=pos_weight)
    return _reduce(op, elem, valid, reduction)


def masked_cross_entropy(
    input: Tensor | Masked,
    target: Tensor,
    mask: Tensor | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> Tensor:
    """Cross-entropy of logits ``(N, C, *)`` against class indices ``(N, *)`` at valid positions.

    ``mask`` fits the target ``(N, *)`` (each dimension equal or 1); a mask
    ``(N, 1, *)`` shaped like the input is accepted too. Targets equal to
    ``ignore_index`` count as masked. With a ``Masked`` input, a position is
    valid when all its class logits are. Masked targets may hold any integer.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [float("nan"), 1.0]])
        >>> target = torch.tensor([0, 7])
        >>> loss = masked_cross_entropy(logits, target, torch.tensor([True, False]))
        >>> round(float(loss), 4)
        0.1269
    """
    op = "masked_cross_entropy"
    valid_in: Tensor | None = None
    if isinstance(input, Masked):
        valid_in = input.full_mask().all(dim=1) if input.data.dim() > 1 else input.full_mask()
        input = input.data
    input = check_data(op, input)
    target = check_data(op, target)
    if (
        input.dim() < 1
        or target.dim() != max(input.dim() - 1, 0)
        or (target.dim() > 0 and (target.shape[0] != input.shape[0] or target.shape[1:] != input.shape[2:]))
    ):
        raise ValueError(
            f"{op}: expected logits (N, C, *) and target (N, *); got input "
            f"{shape_str(input.shape)} and target {shape_str(target.shape)}"
        )
    if target.is_floating_point():
        raise TypeError(f"{op}: expected integer class indices as target, got {target.dtype}")
    valid = target != ignore_index
    if mask is not None:
        if mask.dim() == input.dim() and input.dim() > 1 and mask.shape[1] == 1:
            mask = mask.squeeze(1)
        valid = valid & to_bool_mask(op, target, mask, allow_sequence=False)
    if valid_in is not None:
        valid = valid & valid_in
    valid = valid.expand(target.shape)
    chan = valid.unsqueeze(1) if input.dim() > 1 else valid
    x = torch.where(chan, input, torch.zeros((), dtype=input.dtype, device=input.device))
    t = torch.where(valid, target, torch.zeros_like(target))
    elem = F.cross_entropy(x, t, reduction="none", label_smoothing=label_smoothing)
    return _reduce(op, elem, valid, reduction)
