"""Contract rows for the CNN Modules: partial convolution, pooling, normalization, dense head,
up-sampling, combining, wrappers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn
from tests.module_db import ModuleInfo


def _img(n: int = 3, c: int = 4, h: int = 6, w: int = 7, per_channel: bool = False, p: float = 0.4) -> Masked:
    mc = c if per_channel else 1
    return Masked(torch.randn(n, c, h, w), torch.rand(n, mc, h, w) > p)


def _vol(per_channel: bool = False) -> Masked:
    return Masked(torch.randn(2, 3, 4, 5, 4), torch.rand(2, 3 if per_channel else 1, 4, 5, 4) > 0.4)


def _seq(per_channel: bool = False) -> Masked:
    return Masked(torch.randn(3, 4, 9), torch.rand(3, 4 if per_channel else 1, 9) > 0.4)


def _inputs(make: Callable[[], Masked]) -> Callable[[], tuple[Masked]]:
    return lambda: (make(),)


def _pair() -> tuple[Masked, Masked]:
    return _img(), _img(per_channel=True)


def _two_call(module: nn.Module, a: Masked, b: Masked) -> Any:
    return module(a, b)


def _dead_channel() -> Masked:
    """Per-channel mask with channel 1 masked everywhere (in every sample)."""
    x = _img(per_channel=True)
    x.mask[:, 1] = False
    return x


def _corners() -> Masked:
    """Only the top-left and bottom-right pixels are valid."""
    m = torch.zeros(2, 1, 6, 7, dtype=torch.bool)
    m[:, :, 0, 0] = True
    m[:, :, -1, -1] = True
    return Masked(torch.randn(2, 4, 6, 7), m)


def _one_valid() -> Masked:
    """Per-channel mask: channel 0 has a single valid value in the batch, channel 2 none."""
    x = _img(per_channel=True)
    x.mask[:, 0] = False
    x.mask[0, 0, 1, 1] = True
    x.mask[:, 2] = False
    return x


def _half(dtype: torch.dtype) -> Callable[[], tuple[Masked]]:
    return lambda: (Masked(torch.randn(2, 4, 6, 7).to(dtype), torch.rand(2, 1, 6, 7) > 0.4),)


IMG = _inputs(_img)
IMG_PC = _inputs(lambda: _img(per_channel=True))
VOL = _inputs(_vol)
SEQ = _inputs(_seq)
SEQ_PC = _inputs(lambda: _seq(per_channel=True))
FEAT = _inputs(lambda: Masked(torch.randn(5, 6), torch.rand(5, 6) > 0.4))
ROWS = _inputs(lambda: Masked(torch.randn(3, 5, 6), torch.rand(3, 5) > 0.4))

ENTRIES = [
    # Partial convolution
    ModuleInfo(mnn.PartialConv2d, lambda: mnn.PartialConv2d(4, 5, 3, padding=1), IMG),
    ModuleInfo(
        mnn.PartialConv2d,
        lambda: mnn.PartialConv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
        IMG_PC,
        id="PartialConv2d-per-channel-groups",
    ),
    ModuleInfo(
        mnn.PartialConv2d,
        lambda: mnn.PartialConv2d(4, 5, (3, 2), padding="same", bias=False, padding_valid=True),
        IMG,
        id="PartialConv2d-same-padding_valid",
    ),
    ModuleInfo(
        mnn.PartialConv2d,
        # Padding wider than the kernel: the corner windows reach no input (the bias alone).
        lambda: mnn.PartialConv2d(4, 6, 2, stride=2, padding=2, groups=2, padding_valid=True),
        IMG_PC,
        id="PartialConv2d-padding_valid-padding-only-windows-pc",
    ),
    ModuleInfo(
        mnn.PartialConv1d,
        lambda: mnn.PartialConv1d(4, 3, 3, padding=1, dilation=2, padding_valid=True),
        SEQ,
        id="PartialConv1d-padding_valid",
    ),
    ModuleInfo(
        mnn.PartialConv3d,
        lambda: mnn.PartialConv3d(3, 2, 3, stride=2, padding=1, padding_valid=True),
        VOL,
        id="PartialConv3d-padding_valid",
    ),
    ModuleInfo(mnn.PartialConv1d, lambda: mnn.PartialConv1d(4, 5, 3, padding=1), SEQ),
    ModuleInfo(
        mnn.PartialConv1d, lambda: mnn.PartialConv1d(4, 2, 3, stride=2), SEQ_PC, id="PartialConv1d-pc"
    ),
    ModuleInfo(mnn.PartialConv3d, lambda: mnn.PartialConv3d(3, 2, 3, padding=1), VOL),
    ModuleInfo(
        mnn.PartialConv3d, lambda: mnn.PartialConv3d(3, 2, 2), _inputs(lambda: _vol(True)), id="PC3d-pc"
    ),
    ModuleInfo(
        mnn.PartialConvTranspose2d, lambda: mnn.PartialConvTranspose2d(4, 3, 3, stride=2, padding=1), IMG
    ),
    ModuleInfo(
        mnn.PartialConvTranspose2d,
        lambda: mnn.PartialConvTranspose2d(4, 4, 3, stride=2, groups=2),
        IMG_PC,
        id="PartialConvTranspose2d-per-channel-groups",
    ),
    ModuleInfo(
        mnn.PartialConvTranspose2d,
        lambda: mnn.PartialConvTranspose2d(4, 4, 2, stride=2, groups=2, padding_valid=True),
        IMG_PC,
        id="PartialConvTranspose2d-padding_valid",
    ),
    ModuleInfo(
        mnn.PartialConvTranspose2d,
        # Stride 3 with a 2-tap kernel and output_padding: positions no tap reaches (the bias alone).
        lambda: mnn.PartialConvTranspose2d(4, 3, 2, stride=3, output_padding=2, padding_valid=True),
        IMG,
        id="PartialConvTranspose2d-padding_valid-gaps",
    ),
    ModuleInfo(
        mnn.PartialConvTranspose1d,
        lambda: mnn.PartialConvTranspose1d(4, 2, 3, 2, padding=1, output_padding=1, padding_valid=True),
        SEQ_PC,
        id="PartialConvTranspose1d-padding_valid-pc",
    ),
    ModuleInfo(mnn.PartialConvTranspose1d, lambda: mnn.PartialConvTranspose1d(4, 2, 3, stride=2), SEQ),
    ModuleInfo(mnn.PartialConvTranspose3d, lambda: mnn.PartialConvTranspose3d(3, 2, 2, stride=2), VOL),
    # Pooling
    ModuleInfo(mnn.MaskedMaxPool2d, lambda: mnn.MaskedMaxPool2d(2), IMG),
    ModuleInfo(
        mnn.MaskedMaxPool2d, lambda: mnn.MaskedMaxPool2d(3, 2, 1, ceil_mode=True), IMG_PC, id="MaxPool2d-pc"
    ),
    ModuleInfo(mnn.MaskedMaxPool1d, lambda: mnn.MaskedMaxPool1d(3, 2), SEQ),
    ModuleInfo(mnn.MaskedMaxPool3d, lambda: mnn.MaskedMaxPool3d(2), VOL),
    ModuleInfo(mnn.MaskedAvgPool2d, lambda: mnn.MaskedAvgPool2d(2), IMG),
    ModuleInfo(mnn.MaskedAvgPool2d, lambda: mnn.MaskedAvgPool2d(3, 2, 1), IMG_PC, id="AvgPool2d-pc"),
    ModuleInfo(mnn.MaskedAvgPool1d, lambda: mnn.MaskedAvgPool1d(3, 2, 1), SEQ),
    ModuleInfo(mnn.MaskedAvgPool3d, lambda: mnn.MaskedAvgPool3d(2), VOL),
    ModuleInfo(mnn.MaskedAdaptiveAvgPool2d, lambda: mnn.MaskedAdaptiveAvgPool2d((2, 3)), IMG),
    ModuleInfo(mnn.MaskedAdaptiveAvgPool1d, lambda: mnn.MaskedAdaptiveAvgPool1d(4), SEQ_PC),
    ModuleInfo(mnn.MaskedAdaptiveAvgPool3d, lambda: mnn.MaskedAdaptiveAvgPool3d(2), VOL),
    ModuleInfo(mnn.MaskedAdaptiveMaxPool2d, lambda: mnn.MaskedAdaptiveMaxPool2d((2, 3)), IMG_PC),
    ModuleInfo(mnn.MaskedAdaptiveMaxPool1d, lambda: mnn.MaskedAdaptiveMaxPool1d(4), SEQ),
    ModuleInfo(mnn.MaskedAdaptiveMaxPool3d, lambda: mnn.MaskedAdaptiveMaxPool3d(2), VOL),
    ModuleInfo(mnn.MaskedGlobalAvgPool, mnn.MaskedGlobalAvgPool, IMG),
    ModuleInfo(mnn.MaskedGlobalMaxPool, mnn.MaskedGlobalMaxPool, IMG_PC),
    # Normalization (the checker compares running statistics too)
    ModuleInfo(
        mnn.MaskedBatchNorm2d, lambda: mnn.MaskedBatchNorm2d(4), IMG, options={"rtol": 1e-5, "atol": 1e-6}
    ),
    ModuleInfo(
        mnn.MaskedBatchNorm2d,
        lambda: mnn.MaskedBatchNorm2d(4, momentum=None),
        IMG_PC,
        id="MaskedBatchNorm2d-pc-cma",
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
    ModuleInfo(
        mnn.MaskedBatchNorm1d, lambda: mnn.MaskedBatchNorm1d(6), FEAT, options={"rtol": 1e-5, "atol": 1e-6}
    ),
    ModuleInfo(
        mnn.MaskedBatchNorm1d,
        lambda: mnn.MaskedBatchNorm1d(4),
        SEQ,
        id="BN1d-seq",
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
    ModuleInfo(
        mnn.MaskedBatchNorm3d, lambda: mnn.MaskedBatchNorm3d(3), VOL, options={"rtol": 1e-5, "atol": 1e-6}
    ),
    ModuleInfo(mnn.MaskedInstanceNorm2d, lambda: mnn.MaskedInstanceNorm2d(4, affine=True), IMG),
    ModuleInfo(
        mnn.MaskedInstanceNorm2d,
        lambda: mnn.MaskedInstanceNorm2d(4, track_running_stats=True),
        IMG_PC,
        id="MaskedInstanceNorm2d-running",
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
    ModuleInfo(mnn.MaskedInstanceNorm1d, lambda: mnn.MaskedInstanceNorm1d(4), SEQ),
    ModuleInfo(mnn.MaskedInstanceNorm3d, lambda: mnn.MaskedInstanceNorm3d(3), VOL),
    ModuleInfo(mnn.MaskedGroupNorm, lambda: mnn.MaskedGroupNorm(2, 4), IMG),
    ModuleInfo(mnn.MaskedGroupNorm, lambda: mnn.MaskedGroupNorm(2, 4), IMG_PC, id="MaskedGroupNorm-pc"),
    ModuleInfo(mnn.MaskedLayerNorm, lambda: mnn.MaskedLayerNorm(6), ROWS),
    ModuleInfo(mnn.MaskedLayerNorm, lambda: mnn.MaskedLayerNorm([6, 7]), IMG, id="MaskedLayerNorm-2d"),
    # Dense head
    ModuleInfo(mnn.MaskedFlatten, mnn.MaskedFlatten, IMG),
    ModuleInfo(mnn.MaskedLinear, lambda: mnn.MaskedLinear(6, 3), FEAT),
    ModuleInfo(
        mnn.MaskedLinear, lambda: mnn.MaskedLinear(6, 3, mode="partial"), FEAT, id="MaskedLinear-partial"
    ),
    ModuleInfo(
        mnn.MaskedLinear, lambda: mnn.MaskedLinear(6, 3, mode="partial"), ROWS, id="MaskedLinear-rows"
    ),
    ModuleInfo(mnn.PostMask, lambda: mnn.PostMask(nn.Conv2d(4, 2, 1)), IMG),
    ModuleInfo(mnn.Elementwise, lambda: mnn.Elementwise(nn.Sigmoid()), IMG_PC),
    ModuleInfo(mnn.Elementwise, lambda: mnn.Elementwise(nn.Dropout(0.5)), IMG, id="Elementwise-dropout"),
    # Up-sampling
    ModuleInfo(mnn.MaskedUpsample, lambda: mnn.MaskedUpsample(scale_factor=2), IMG),
    ModuleInfo(
        mnn.MaskedUpsample,
        lambda: mnn.MaskedUpsample(scale_factor=2, mode="bilinear"),
        IMG_PC,
        id="Upsample-bilinear",
    ),
    ModuleInfo(
        mnn.MaskedUpsample,
        lambda: mnn.MaskedUpsample(size=(5, 11), mode="bilinear", align_corners=True),
        IMG,
        id="Upsample-bilinear-ac",
    ),
    ModuleInfo(
        mnn.MaskedUpsample, lambda: mnn.MaskedUpsample(scale_factor=2, mode="linear"), SEQ, id="Upsample-1d"
    ),
    ModuleInfo(
        mnn.MaskedUpsample,
        lambda: mnn.MaskedUpsample(scale_factor=2, mode="trilinear"),
        VOL,
        id="Upsample-3d",
    ),
    # Combining
    ModuleInfo(mnn.MaskedAdd, mnn.MaskedAdd, _pair, call=_two_call),
    ModuleInfo(mnn.MaskedMul, mnn.MaskedMul, _pair, call=_two_call),
    ModuleInfo(mnn.MaskedCat, mnn.MaskedCat, _pair, call=_two_call),
    # Review: edge cases (dead channels, corner-only masks, strides/dilations with groups,
    # ceil_mode, single valid values, half precision).
    ModuleInfo(
        mnn.PartialConv2d,
        lambda: mnn.PartialConv2d(4, 8, 3, stride=3, padding=1, dilation=3, groups=4),
        _inputs(_dead_channel),
        id="PartialConv2d-dead-channel-s3-d3-g4",
    ),
    ModuleInfo(
        mnn.PartialConv2d, lambda: mnn.PartialConv2d(4, 2, 5), _inputs(_corners), id="PartialConv2d-corners"
    ),
    ModuleInfo(
        mnn.PartialConvTranspose2d,
        lambda: mnn.PartialConvTranspose2d(
            4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2
        ),
        _inputs(_dead_channel),
        id="PartialConvTranspose2d-dead-channel-s2-d2-g2",
    ),
    ModuleInfo(
        mnn.MaskedMaxPool2d,
        lambda: mnn.MaskedMaxPool2d(2, 2, 0, dilation=2, ceil_mode=True),
        _inputs(_corners),
        id="MaxPool2d-corners-dilation-ceil",
    ),
    ModuleInfo(
        mnn.MaskedAvgPool2d,
        lambda: mnn.MaskedAvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
        _inputs(_dead_channel),
        id="AvgPool2d-dead-channel-ceil",
    ),
    ModuleInfo(
        mnn.MaskedBatchNorm2d,
        lambda: mnn.MaskedBatchNorm2d(4),
        _inputs(_one_valid),
        id="MaskedBatchNorm2d-one-valid-and-empty-channel",
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
    ModuleInfo(
        mnn.MaskedInstanceNorm2d,
        lambda: mnn.MaskedInstanceNorm2d(4, affine=True, track_running_stats=True),
        _inputs(_one_valid),
        id="MaskedInstanceNorm2d-one-valid-and-empty-channel",
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
    ModuleInfo(
        mnn.MaskedGroupNorm, lambda: mnn.MaskedGroupNorm(2, 4), _inputs(_one_valid), id="GroupNorm-one-valid"
    ),
    ModuleInfo(
        mnn.MaskedAvgPool2d,
        lambda: mnn.MaskedAvgPool2d(3, 2, 1),
        _half(torch.float16),
        id="AvgPool2d-float16",
        options={"rtol": 1e-3, "atol": 1e-3},
    ),
    ModuleInfo(
        mnn.MaskedUpsample,
        lambda: mnn.MaskedUpsample(scale_factor=3, mode="bilinear"),
        _half(torch.bfloat16),
        id="Upsample-bilinear-bfloat16",
        options={"rtol": 1e-2, "atol": 1e-2},
    ),
    ModuleInfo(
        mnn.MaskedBatchNorm2d,
        lambda: mnn.MaskedBatchNorm2d(4),
        _half(torch.float16),
        id="MaskedBatchNorm2d-float16",
        options={"rtol": 1e-3, "atol": 1e-3},
    ),
    # Normalization, pooling, up-sampling after the op-core redesign: the fused nodes in
    # float64 and without affine parameters, channels_last data, bitwise -inf fill in half
    # precision, the remaining interpolation modes.
    ModuleInfo(
        mnn.MaskedBatchNorm2d,
        lambda: mnn.MaskedBatchNorm2d(4, affine=False).double(),
        _inputs(lambda: Masked(torch.randn(3, 4, 5, 6, dtype=torch.float64), torch.rand(3, 4, 5, 6) > 0.4)),
        id="MaskedBatchNorm2d-float64-no-affine-pc",
    ),
    ModuleInfo(
        mnn.MaskedBatchNorm2d,
        lambda: mnn.MaskedBatchNorm2d(4, track_running_stats=False),
        _inputs(lambda: Masked(_img().data.contiguous(memory_format=torch.channels_last), _img().mask)),
        id="MaskedBatchNorm2d-channels_last-no-stats",
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
    ModuleInfo(
        mnn.MaskedMaxPool2d,
        lambda: mnn.MaskedMaxPool2d(3, 2, 1),
        _half(torch.bfloat16),
        id="MaxPool2d-bfloat16",
    ),
    ModuleInfo(
        mnn.MaskedAdaptiveAvgPool2d,
        lambda: mnn.MaskedAdaptiveAvgPool2d((4, 5)),
        IMG_PC,
        id="AdaptiveAvgPool2d-pc-upsampling-windows",
    ),
    ModuleInfo(mnn.MaskedGlobalAvgPool, mnn.MaskedGlobalAvgPool, VOL, id="GlobalAvgPool-3d"),
    ModuleInfo(
        mnn.MaskedUpsample, lambda: mnn.MaskedUpsample(size=(4, 5), mode="area"), IMG_PC, id="Upsample-area"
    ),
    ModuleInfo(
        mnn.MaskedUpsample,
        lambda: mnn.MaskedUpsample(scale_factor=1.5, mode="nearest-exact"),
        IMG_PC,
        id="Upsample-nearest-exact",
    ),
]
