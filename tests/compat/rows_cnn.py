"""Rows for the CNN ops: partial convolution, pooling, normalization, dense head, up-sampling,
combining and wrappers. Each Module row also covers the functional op its forward calls."""

from __future__ import annotations

import torch
from torch import nn

import masknn.functional as F
from masknn import nn as mnn
from tests.compat.calls import binary, on_data, parent, unary
from tests.compat.harness import NA, CompatInfo
from tests.compat.inputs import features, image, pair, sequence, signal, volume

INDUCTOR = "inductor"

#: nn.BatchNorm in training updates its running statistics in place: vmap refuses.
VMAP_RUNNING_STATS = NA(
    "nn.BatchNorm in training updates unbatched running statistics from batched data: vmap refuses it",
    "running_mean",
)

#: torch.onnx has no translation of these adaptive pooling ops.
ONNX_ADAPTIVE = NA(
    "torch.onnx has no translation for this adaptive pooling op "
    "(aten.adaptive_max_pool1d/2d/3d, aten._adaptive_avg_pool3d)",
    "No ONNX function found for",
)

ROWS = [
    # Partial convolution
    CompatInfo(
        "PartialConv2d",
        (mnn.PartialConv2d, F.partial_conv2d),
        lambda: mnn.PartialConv2d(3, 4, 3, padding=1),
        unary,
        image(),
        parent(nn.Conv2d),
        backend=INDUCTOR,
    ),
    CompatInfo(
        "PartialConv2d-per-channel-stride-groups",
        (mnn.PartialConv2d,),
        lambda: mnn.PartialConv2d(4, 4, 3, stride=2, padding=1, groups=2),
        unary,
        image(4, 6, 7, per_channel=True),
        parent(nn.Conv2d),
    ),
    CompatInfo(
        "PartialConv1d",
        (mnn.PartialConv1d, F.partial_conv1d),
        lambda: mnn.PartialConv1d(3, 4, 3, padding=1),
        unary,
        signal(),
        parent(nn.Conv1d),
    ),
    CompatInfo(
        "PartialConv3d",
        (mnn.PartialConv3d, F.partial_conv3d),
        lambda: mnn.PartialConv3d(2, 3, 3, padding=1),
        unary,
        volume(),
        parent(nn.Conv3d),
    ),
    CompatInfo(
        "PartialConvTranspose2d",
        (mnn.PartialConvTranspose2d, F.partial_conv_transpose2d),
        lambda: mnn.PartialConvTranspose2d(3, 2, 3, stride=2, padding=1),
        unary,
        image(),
        parent(nn.ConvTranspose2d),
    ),
    CompatInfo(
        "PartialConvTranspose1d",
        (mnn.PartialConvTranspose1d, F.partial_conv_transpose1d),
        lambda: mnn.PartialConvTranspose1d(3, 2, 3, stride=2),
        unary,
        signal(),
        parent(nn.ConvTranspose1d),
    ),
    CompatInfo(
        "PartialConvTranspose3d",
        (mnn.PartialConvTranspose3d, F.partial_conv_transpose3d),
        lambda: mnn.PartialConvTranspose3d(2, 2, 2, stride=2),
        unary,
        volume(),
        parent(nn.ConvTranspose3d),
    ),
    # Pooling
    CompatInfo(
        "MaskedMaxPool2d",
        (mnn.MaskedMaxPool2d, F.masked_max_pool2d),
        lambda: mnn.MaskedMaxPool2d(2),
        unary,
        image(3, 6, 6),
        parent(nn.MaxPool2d),
        backend=INDUCTOR,
    ),
    CompatInfo(
        "MaskedMaxPool1d",
        (mnn.MaskedMaxPool1d, F.masked_max_pool1d),
        lambda: mnn.MaskedMaxPool1d(3, 2),
        unary,
        signal(),
        parent(nn.MaxPool1d),
    ),
    CompatInfo(
        "MaskedMaxPool3d",
        (mnn.MaskedMaxPool3d, F.masked_max_pool3d),
        lambda: mnn.MaskedMaxPool3d(2),
        unary,
        volume(),
        parent(nn.MaxPool3d),
    ),
    CompatInfo(
        "MaskedAvgPool2d",
        (mnn.MaskedAvgPool2d, F.masked_avg_pool2d),
        lambda: mnn.MaskedAvgPool2d(3, 2, 1),
        unary,
        image(),
        parent(nn.AvgPool2d),
    ),
    CompatInfo(
        "MaskedAvgPool1d",
        (mnn.MaskedAvgPool1d, F.masked_avg_pool1d),
        lambda: mnn.MaskedAvgPool1d(3, 2, 1),
        unary,
        signal(),
        parent(nn.AvgPool1d),
    ),
    CompatInfo(
        "MaskedAvgPool3d",
        (mnn.MaskedAvgPool3d, F.masked_avg_pool3d),
        lambda: mnn.MaskedAvgPool3d(2),
        unary,
        volume(),
        parent(nn.AvgPool3d),
    ),
    CompatInfo(
        "MaskedAdaptiveAvgPool2d",
        (mnn.MaskedAdaptiveAvgPool2d, F.masked_adaptive_avg_pool2d),
        lambda: mnn.MaskedAdaptiveAvgPool2d((2, 3)),
        unary,
        image(),
        parent(nn.AdaptiveAvgPool2d),
    ),
    CompatInfo(
        "MaskedAdaptiveAvgPool1d",
        (mnn.MaskedAdaptiveAvgPool1d, F.masked_adaptive_avg_pool1d),
        lambda: mnn.MaskedAdaptiveAvgPool1d(3),
        unary,
        signal(per_channel=True),
        parent(nn.AdaptiveAvgPool1d),
    ),
    CompatInfo(
        "MaskedAdaptiveAvgPool3d",
        (mnn.MaskedAdaptiveAvgPool3d, F.masked_adaptive_avg_pool3d),
        lambda: mnn.MaskedAdaptiveAvgPool3d(2),
        unary,
        volume(),
        parent(nn.AdaptiveAvgPool3d),
        na={"onnx": ONNX_ADAPTIVE},
    ),
    CompatInfo(
        "MaskedAdaptiveMaxPool2d",
        (mnn.MaskedAdaptiveMaxPool2d, F.masked_adaptive_max_pool2d),
        lambda: mnn.MaskedAdaptiveMaxPool2d((2, 3)),
        unary,
        image(per_channel=True),
        parent(nn.AdaptiveMaxPool2d),
        na={"onnx": ONNX_ADAPTIVE},
    ),
    CompatInfo(
        "MaskedAdaptiveMaxPool1d",
        (mnn.MaskedAdaptiveMaxPool1d, F.masked_adaptive_max_pool1d),
        lambda: mnn.MaskedAdaptiveMaxPool1d(3),
        unary,
        signal(),
        parent(nn.AdaptiveMaxPool1d),
        na={"onnx": ONNX_ADAPTIVE},
    ),
    CompatInfo(
        "MaskedAdaptiveMaxPool3d",
        (mnn.MaskedAdaptiveMaxPool3d, F.masked_adaptive_max_pool3d),
        lambda: mnn.MaskedAdaptiveMaxPool3d(2),
        unary,
        volume(),
        parent(nn.AdaptiveMaxPool3d),
        na={"onnx": ONNX_ADAPTIVE},
    ),
    CompatInfo(
        "MaskedGlobalAvgPool",
        (mnn.MaskedGlobalAvgPool, F.masked_global_avg_pool),
        mnn.MaskedGlobalAvgPool,
        unary,
        image(),
        on_data(lambda x: x.mean((2, 3))),
    ),
    CompatInfo(
        "MaskedGlobalMaxPool",
        (mnn.MaskedGlobalMaxPool, F.masked_global_max_pool),
        mnn.MaskedGlobalMaxPool,
        unary,
        image(per_channel=True),
        on_data(lambda x: x.amax((2, 3))),
    ),
    # Normalization (training mode: batch statistics, running statistics updated)
    CompatInfo(
        "MaskedBatchNorm2d",
        (mnn.MaskedBatchNorm2d, F.masked_batch_norm),
        lambda: mnn.MaskedBatchNorm2d(3),
        unary,
        image(),
        parent(nn.BatchNorm2d),
        backend=INDUCTOR,
        na={"vmap": VMAP_RUNNING_STATS},
    ),
    CompatInfo(
        "MaskedBatchNorm2d-batch-stats",
        (mnn.MaskedBatchNorm2d,),
        lambda: mnn.MaskedBatchNorm2d(3, track_running_stats=False),
        unary,
        image(),
        parent(nn.BatchNorm2d),
    ),
    CompatInfo(
        "MaskedBatchNorm2d-eval",
        (mnn.MaskedBatchNorm2d,),
        lambda: mnn.MaskedBatchNorm2d(3),
        unary,
        image(per_channel=True),
        parent(nn.BatchNorm2d),
        train=False,
    ),
    CompatInfo(
        "MaskedBatchNorm1d",
        (mnn.MaskedBatchNorm1d,),
        lambda: mnn.MaskedBatchNorm1d(6),
        unary,
        features(6),
        parent(nn.BatchNorm1d),
        na={
            "vmap": NA(
                "one (N, C) sample has one value per channel: nn.BatchNorm1d refuses it in training",
                "Expected more than 1 value per channel",
            )
        },
    ),
    CompatInfo(
        "MaskedBatchNorm3d",
        (mnn.MaskedBatchNorm3d,),
        lambda: mnn.MaskedBatchNorm3d(2),
        unary,
        volume(),
        parent(nn.BatchNorm3d),
        na={"vmap": VMAP_RUNNING_STATS},
    ),
    CompatInfo(
        "MaskedInstanceNorm2d",
        (mnn.MaskedInstanceNorm2d, F.masked_instance_norm),
        lambda: mnn.MaskedInstanceNorm2d(3, affine=True),
        unary,
        image(),
        parent(nn.InstanceNorm2d),
    ),
    CompatInfo(
        "MaskedInstanceNorm1d",
        (mnn.MaskedInstanceNorm1d,),
        lambda: mnn.MaskedInstanceNorm1d(3),
        unary,
        signal(),
        parent(nn.InstanceNorm1d),
    ),
    CompatInfo(
        "MaskedInstanceNorm3d",
        (mnn.MaskedInstanceNorm3d,),
        lambda: mnn.MaskedInstanceNorm3d(2, affine=True),
        unary,
        volume(),
        parent(nn.InstanceNorm3d),
    ),
    CompatInfo(
        "MaskedGroupNorm",
        (mnn.MaskedGroupNorm, F.masked_group_norm),
        lambda: mnn.MaskedGroupNorm(2, 4),
        unary,
        image(4),
        parent(nn.GroupNorm),
    ),
    CompatInfo(
        "MaskedLayerNorm",
        (mnn.MaskedLayerNorm, F.masked_layer_norm),
        lambda: mnn.MaskedLayerNorm(5),
        unary,
        sequence(5, mask_3d=True),
        parent(nn.LayerNorm),
    ),
    # Dense head
    CompatInfo(
        "MaskedFlatten",
        (mnn.MaskedFlatten, F.masked_flatten),
        mnn.MaskedFlatten,
        unary,
        image(),
        parent(nn.Flatten),
    ),
    CompatInfo(
        "MaskedLinear",
        (mnn.MaskedLinear, F.masked_linear),
        lambda: mnn.MaskedLinear(6, 3),
        unary,
        features(6),
        parent(nn.Linear),
    ),
    CompatInfo(
        "MaskedLinear-partial",
        (mnn.MaskedLinear,),
        lambda: mnn.MaskedLinear(6, 3, mode="partial"),
        unary,
        features(6),
        parent(nn.Linear),
    ),
    CompatInfo(
        "PostMask",
        (mnn.PostMask,),
        lambda: mnn.PostMask(nn.Conv2d(3, 2, 1)),
        unary,
        image(),
        lambda layer, x, m: layer.module(x),
    ),
    CompatInfo(
        "Elementwise",
        (mnn.Elementwise,),
        lambda: mnn.Elementwise(nn.GELU()),
        unary,
        image(),
        lambda layer, x, m: layer.module(x),
    ),
    # Up-sampling
    CompatInfo(
        "MaskedUpsample",
        (mnn.MaskedUpsample, F.masked_interpolate),
        lambda: mnn.MaskedUpsample(scale_factor=2),
        unary,
        image(),
        parent(nn.Upsample),
    ),
    CompatInfo(
        "MaskedUpsample-bilinear",
        (mnn.MaskedUpsample,),
        lambda: mnn.MaskedUpsample(scale_factor=2, mode="bilinear"),
        unary,
        image(per_channel=True),
        parent(nn.Upsample),
    ),
    # Combining
    CompatInfo(
        "MaskedAdd",
        (mnn.MaskedAdd, F.masked_add),
        mnn.MaskedAdd,
        binary,
        pair(image(), image(per_channel=True)),
        lambda layer, x, m, y, m2: x + y,
    ),
    CompatInfo(
        "MaskedMul",
        (mnn.MaskedMul, F.masked_mul),
        mnn.MaskedMul,
        binary,
        pair(image(), image(per_channel=True)),
        lambda layer, x, m, y, m2: x * y,
    ),
    CompatInfo(
        "MaskedCat",
        (mnn.MaskedCat, F.masked_cat),
        mnn.MaskedCat,
        binary,
        pair(image(), image(per_channel=True)),
        lambda layer, x, m, y, m2: torch.cat([x, y], 1),
    ),
]
