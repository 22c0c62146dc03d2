"""Mask-aware Modules: each takes a [`masknn.Masked`][] (or a plain tensor, taken as
fully valid) and returns a ``Masked``."""

from masknn.nn.attention import MaskedMultiheadAttention
from masknn.nn.combine import MaskedAdd, MaskedCat, MaskedMul
from masknn.nn.conv import (
    PartialConv1d,
    PartialConv2d,
    PartialConv3d,
    PartialConvTranspose1d,
    PartialConvTranspose2d,
    PartialConvTranspose3d,
)
from masknn.nn.embedding import MaskedEmbedding
from masknn.nn.fill import Fill, LearnedFill, MaskChannel
from masknn.nn.linear import MaskedFlatten, MaskedLinear
from masknn.nn.losses import (
    MaskedBCEWithLogitsLoss,
    MaskedCrossEntropyLoss,
    MaskedL1Loss,
    MaskedMSELoss,
    MaskedSmoothL1Loss,
)
from masknn.nn.masking import MaskFromValue, Unwrap
from masknn.nn.normalization import (
    MaskedBatchNorm1d,
    MaskedBatchNorm2d,
    MaskedBatchNorm3d,
    MaskedGroupNorm,
    MaskedInstanceNorm1d,
    MaskedInstanceNorm2d,
    MaskedInstanceNorm3d,
    MaskedLayerNorm,
)
from masknn.nn.pooling import (
    MaskedAdaptiveAvgPool1d,
    MaskedAdaptiveAvgPool2d,
    MaskedAdaptiveAvgPool3d,
    MaskedAdaptiveMaxPool1d,
    MaskedAdaptiveMaxPool2d,
    MaskedAdaptiveMaxPool3d,
    MaskedAvgPool1d,
    MaskedAvgPool2d,
    MaskedAvgPool3d,
    MaskedGlobalAvgPool,
    MaskedGlobalMaxPool,
    MaskedMaxPool1d,
    MaskedMaxPool2d,
    MaskedMaxPool3d,
)
from masknn.nn.recurrent import MaskedGRU, MaskedLSTM, MaskedRNN
from masknn.nn.sync_batchnorm import MaskedSyncBatchNorm
from masknn.nn.temporal_pool import MaskedTemporalPool
from masknn.nn.time_distributed import TimeDistributedLinear
from masknn.nn.transformer import MaskedTransformerEncoder, MaskedTransformerEncoderLayer
from masknn.nn.upsample import MaskedUpsample
from masknn.nn.wrappers import Elementwise, PostMask

__all__ = [
    "Elementwise",
    "Fill",
    "LearnedFill",
    "MaskChannel",
    "MaskFromValue",
    "MaskedAdaptiveAvgPool1d",
    "MaskedAdaptiveAvgPool2d",
    "MaskedAdaptiveAvgPool3d",
    "MaskedAdaptiveMaxPool1d",
    "MaskedAdaptiveMaxPool2d",
    "MaskedAdaptiveMaxPool3d",
    "MaskedAdd",
    "MaskedAvgPool1d",
    "MaskedAvgPool2d",
    "MaskedAvgPool3d",
    "MaskedBCEWithLogitsLoss",
    "MaskedBatchNorm1d",
    "MaskedBatchNorm2d",
    "MaskedBatchNorm3d",
    "MaskedCat",
    "MaskedCrossEntropyLoss",
    "MaskedEmbedding",
    "MaskedFlatten",
    "MaskedGRU",
    "MaskedGlobalAvgPool",
    "MaskedGlobalMaxPool",
    "MaskedGroupNorm",
    "MaskedInstanceNorm1d",
    "MaskedInstanceNorm2d",
    "MaskedInstanceNorm3d",
    "MaskedL1Loss",
    "MaskedLSTM",
    "MaskedLayerNorm",
    "MaskedLinear",
    "MaskedMSELoss",
    "MaskedMaxPool1d",
    "MaskedMaxPool2d",
    "MaskedMaxPool3d",
    "MaskedMul",
    "MaskedMultiheadAttention",
    "MaskedRNN",
    "MaskedSmoothL1Loss",
    "MaskedSyncBatchNorm",
    "MaskedTemporalPool",
    "MaskedTransformerEncoder",
    "MaskedTransformerEncoderLayer",
    "MaskedUpsample",
    "PartialConv1d",
    "PartialConv2d",
    "PartialConv3d",
    "PartialConvTranspose1d",
    "PartialConvTranspose2d",
    "PartialConvTranspose3d",
    "PostMask",
    "TimeDistributedLinear",
    "Unwrap",
]
