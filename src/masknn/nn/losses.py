"""Masked loss Modules, thin wrappers of ``masknn.functional.losses``."""

from __future__ import annotations

from torch import Tensor, nn

from masknn._masked import Masked
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
        if reduction not in ("none", "sum", "mean"):
            raise ValueError(
                f"{type(self).__name__}: reduction must be 'none', 'sum' or 'mean', got {reduction!r}"
            )
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
        return L.masked_mse_loss(input, target, mask, self.reduction)


class MaskedL1Loss(_MaskedLoss):
    """Mean absolute error over valid elements; see [`masknn.functional.masked_l1_loss`][]."""

    def forward(self, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None) -> Tensor:
        return L.masked_l1_loss(input, target, mask, self.reduction)


class MaskedSmoothL1Loss(_MaskedLoss):
    """Smooth L1 loss over valid elements; see [`masknn.functional.masked_smooth_l1_loss`][]."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None) -> Tensor:
        return L.masked_smooth_l1_loss(input, target, mask, self.reduction, self.beta)


class MaskedBCEWithLogitsLoss(_MaskedLoss):
    """BCE on logits over valid elements.

    See [`masknn.functional.masked_binary_cross_entropy_with_logits`][].
    """

    pos_weight: Tensor | None

    def __init__(self, reduction: str = "mean", pos_weight: Tensor | None = None) -> None:
        super().__init__(reduction)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor | Masked, target: Tensor | Masked, mask: Tensor | None = None) -> Tensor:
        return L.masked_binary_cross_entropy_with_logits(input, target, mask, self.reduction, self.pos_weight)


class MaskedCrossEntropyLoss(_MaskedLoss):
    """Cross-entropy at valid positions; see [`masknn.functional.masked_cross_entropy`][]."""

    def __init__(
        self, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int = -100
    ) -> None:
        super().__init__(reduction)
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index

    def forward(self, input: Tensor | Masked, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return L.masked_cross_entropy(
            input, target, mask, self.reduction, self.label_smoothing, self.ignore_index
        )
