"""Mask-aware Modules: each takes a :class:`masknn.Masked` (or a plain tensor, taken as
fully valid) and returns a ``Masked``."""

from masknn.nn.attention import MaskedMultiheadAttention
from masknn.nn.fill import Fill, LearnedFill, MaskChannel
from masknn.nn.losses import (
    MaskedBCEWithLogitsLoss,
    MaskedCrossEntropyLoss,
    MaskedL1Loss,
    MaskedMSELoss,
    MaskedSmoothL1Loss,
)
from masknn.nn.masking import MaskFromValue, Unwrap
from masknn.nn.recurrent import MaskedGRU, MaskedLSTM, MaskedRNN
from masknn.nn.temporal_pool import MaskedTemporalPool
from masknn.nn.time_distributed import TimeDistributedLinear

__all__ = [
    "Fill",
    "LearnedFill",
    "MaskChannel",
    "MaskFromValue",
    "MaskedBCEWithLogitsLoss",
    "MaskedCrossEntropyLoss",
    "MaskedGRU",
    "MaskedL1Loss",
    "MaskedLSTM",
    "MaskedMSELoss",
    "MaskedMultiheadAttention",
    "MaskedRNN",
    "MaskedSmoothL1Loss",
    "MaskedTemporalPool",
    "TimeDistributedLinear",
    "Unwrap",
]
