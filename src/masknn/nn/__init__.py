"""Mask-aware Modules: each takes a :class:`masknn.Masked` (or a plain tensor, taken as
fully valid) and returns a ``Masked``."""

from masknn.nn.fill import Fill, LearnedFill, MaskChannel
from masknn.nn.losses import (
    MaskedBCEWithLogitsLoss,
    MaskedCrossEntropyLoss,
    MaskedL1Loss,
    MaskedMSELoss,
    MaskedSmoothL1Loss,
)
from masknn.nn.masking import MaskFromValue, Unwrap

__all__ = [
    "Fill",
    "LearnedFill",
    "MaskChannel",
    "MaskFromValue",
    "MaskedBCEWithLogitsLoss",
    "MaskedCrossEntropyLoss",
    "MaskedL1Loss",
    "MaskedMSELoss",
    "MaskedSmoothL1Loss",
    "Unwrap",
]
