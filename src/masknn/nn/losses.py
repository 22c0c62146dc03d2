"""Masked loss Modules, thin wrappers of ``masknn.functional.losses``."""

from __future__ import annotations

from torch import Tensor, nn

from masknn._masked import Masked
from masknn._validation import check_choice, check_int, check_number
from masknn.functional import losses as L

__all__ = [
    "MaskedBCEWithLogitsLoss",
    "MaskedCrossEntropyLoss",
    "MaskedL1Loss",
    "MaskedMSELoss",
    "MaskedSmoothL1Loss",
]


class _MaskedLoss(nn.Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        check_choice(type(self).__name__, "reduction", reduction, ("none", "sum", "mean"))
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MaskedMSELoss(_MaskedLoss):
    """Mean squared error over valid elements; see [`masknn.functional.masked_mse_loss`][].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> pred = Masked(torch.tensor([1.0, 9.0]), torch.tensor([True, False]))
        >>> MaskedMSELoss()(pred, torch.tensor([2.0, 0.0]))
        tensor(1.)
    """

    def forward(self, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None) -> Tensor:
        return L.loss(type(self).__name__, "mse", input, target, mask, self.reduction)


class MaskedL1Loss(_MaskedLoss):
    """Mean absolute error over valid elements; see [`masknn.functional.masked_l1_loss`][]."""

    def forward(self, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None) -> Tensor:
        return L.loss(type(self).__name__, "l1", input, target, mask, self.reduction)


class MaskedSmoothL1Loss(_MaskedLoss):
    """Smooth L1 loss over valid elements; see [`masknn.functional.masked_smooth_l1_loss`][]."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        check_number(type(self).__name__, "beta", beta, 0.0)
        self.beta = beta

    def forward(self, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None) -> Tensor:
        return L.loss(type(self).__name__, "smooth_l1", input, target, mask, self.reduction, self.beta)


class MaskedBCEWithLogitsLoss(_MaskedLoss):
    """BCE on logits over valid elements.

    See [`masknn.functional.masked_binary_cross_entropy_with_logits`][].
    """

    pos_weight: Tensor | None

    def __init__(self, reduction: str = "mean", pos_weight: Tensor | None = None) -> None:
        super().__init__(reduction)
        layer = type(self).__name__
        if pos_weight is not None:
            if not isinstance(pos_weight, Tensor):
                raise TypeError(
                    f"{layer}: expected pos_weight as a tensor or None, got {type(pos_weight).__name__}"
                )
            if not pos_weight.is_floating_point():
                raise TypeError(
                    f"{layer}: expected a floating point pos_weight, got dtype {pos_weight.dtype}"
                )
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None) -> Tensor:
        return L.bce(type(self).__name__, input, target, mask, self.reduction, self.pos_weight)


class MaskedCrossEntropyLoss(_MaskedLoss):
    """Cross-entropy at valid positions; see [`masknn.functional.masked_cross_entropy`][].

    Args:
        reduction: as ``nn.CrossEntropyLoss``.
        label_smoothing: as ``nn.CrossEntropyLoss``.
        ignore_index: as ``nn.CrossEntropyLoss``.
        class_dim: where the classes are: ``1`` for ``(N, C, *)`` logits (torch's layout,
            the default) or ``-1`` for ``(N, *, C)`` (Keras' layout, e.g. ``(N, T, C)``
            from a per-timestep ``Linear``); the target is ``(N, *)`` either way.

    Examples:
        >>> import torch
        >>> loss = MaskedCrossEntropyLoss(class_dim=-1)
        >>> logits = torch.zeros(2, 4, 3)  # (N, T, C)
        >>> steps = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
        >>> loss(logits, torch.zeros(2, 4, dtype=torch.long), steps)
        tensor(1.0986)
    """

    def __init__(
        self,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        class_dim: int = 1,
    ) -> None:
        super().__init__(reduction)
        check_number("MaskedCrossEntropyLoss", "label_smoothing", label_smoothing, 0.0, 1.0)
        check_int("MaskedCrossEntropyLoss", "ignore_index", ignore_index)
        if not isinstance(class_dim, int) or class_dim == 0:
            raise ValueError(
                "MaskedCrossEntropyLoss: class_dim must be a non-batch dimension (1 or -1), "
                f"got {class_dim!r}"
            )
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.class_dim = class_dim

    def extra_repr(self) -> str:
        return super().extra_repr() + f", class_dim={self.class_dim}"

    def forward(self, input: Tensor | Masked, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return L.cross_entropy(
            type(self).__name__,
            input,
            target,
            mask,
            self.reduction,
            self.label_smoothing,
            self.ignore_index,
            self.class_dim,
        )
