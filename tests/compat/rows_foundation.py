"""Rows for the foundation ops: fills, masking and the losses."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as tF
from torch import Tensor, nn

import masknn.functional as F
from masknn import Masked
from masknn import nn as mnn
from tests.compat.calls import unary
from tests.compat.harness import NA, Builder, CompatInfo
from tests.compat.inputs import binary_targets, class_targets, image, pair, sequence, signal


def _where(x: Tensor, m: Tensor, value: Tensor | float) -> Tensor:
    return torch.where(m, x, torch.as_tensor(value, dtype=x.dtype))


def _running_fill_twin(layer: nn.Module, x: Tensor, m: Tensor) -> Tensor:
    """Fill('running_mean') written in plain PyTorch: a running mean updated in place."""
    if layer.training:
        with torch.no_grad():
            layer.running_mean.lerp_(x.mean((0, 2, 3)), layer.momentum)
    return _where(x, m, layer.running_mean.view(1, -1, 1, 1))


def _nan_padded(f: int = 5, t: int = 6) -> Builder:
    """``(x,)``: ``(N, T, f)`` whose masked steps are NaN whatever the hole (MaskFromValue(nan))."""
    steps = sequence(f, t, mask_3d=True)

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        x, m = steps(n, grow, g, hole)
        return (_where(x, m, float("nan")),)

    return make


def _loss(layer: nn.Module, p: Tensor, pm: Tensor, t: Tensor, tm: Tensor) -> Tensor:
    out: Tensor = layer(Masked(p, pm), Masked(t, tm))
    return out


def _ce(layer: nn.Module, logits: Tensor, target: Tensor, m: Tensor) -> Tensor:
    out: Tensor = layer(logits, target, m)
    return out


REGRESSION = pair(signal(4, 5, per_channel=True), signal(4, 5))

ROWS = [
    CompatInfo(
        "Fill-zero",
        (mnn.Fill, F.fill),
        lambda: mnn.Fill("zero"),
        unary,
        image(),
        lambda layer, x, m: _where(x, m, 0.0),
    ),
    CompatInfo(
        "Fill-mean",
        (mnn.Fill,),
        lambda: mnn.Fill("mean"),
        unary,
        image(per_channel=True),
        lambda layer, x, m: _where(x, m, x.mean((2, 3), keepdim=True)),
    ),
    CompatInfo(
        "Fill-running_mean",
        (mnn.Fill,),
        lambda: mnn.Fill("running_mean", num_channels=3),
        unary,
        image(),
        _running_fill_twin,
        na={
            "vmap": NA(
                "a running mean updated in place from the batch (as nn.BatchNorm's): vmap refuses it",
                "lerp_",
            )
        },
    ),
    CompatInfo(
        "LearnedFill",
        (mnn.LearnedFill,),
        lambda: mnn.LearnedFill(3),
        unary,
        image(),
        lambda layer, x, m: _where(x, m, layer.token.view(1, -1, 1, 1)),
    ),
    CompatInfo(
        "MaskChannel",
        (mnn.MaskChannel, F.mask_channel),
        mnn.MaskChannel,
        unary,
        image(),
        lambda layer, x, m: torch.cat([x, m.to(x.dtype)], 1),
    ),
    CompatInfo(
        "MaskFromValue-nan",
        (mnn.MaskFromValue,),
        lambda: mnn.MaskFromValue(float("nan")),
        lambda layer, x: layer(x),
        _nan_padded(),
        lambda layer, x: _where(x, ~x.isnan(), 0.0),
    ),
    CompatInfo(
        "Unwrap",
        (mnn.Unwrap,),
        mnn.Unwrap,
        unary,
        image(),
        lambda layer, x, m: _where(x, m, 0.0),
    ),
    # Losses: Masked prediction and target, each with its own mask.
    CompatInfo(
        "MaskedMSELoss",
        (mnn.MaskedMSELoss, F.masked_mse_loss),
        mnn.MaskedMSELoss,
        _loss,
        REGRESSION,
        lambda layer, p, pm, t, tm: tF.mse_loss(p, t),
    ),
    CompatInfo(
        "MaskedL1Loss",
        (mnn.MaskedL1Loss, F.masked_l1_loss),
        lambda: mnn.MaskedL1Loss("sum"),
        _loss,
        REGRESSION,
        lambda layer, p, pm, t, tm: tF.l1_loss(p, t, reduction="sum"),
    ),
    CompatInfo(
        "MaskedSmoothL1Loss",
        (mnn.MaskedSmoothL1Loss, F.masked_smooth_l1_loss),
        lambda: mnn.MaskedSmoothL1Loss(beta=0.5),
        _loss,
        REGRESSION,
        lambda layer, p, pm, t, tm: tF.smooth_l1_loss(p, t, beta=0.5),
    ),
    CompatInfo(
        "MaskedMSELoss-none",
        (mnn.MaskedMSELoss,),
        lambda: mnn.MaskedMSELoss("none"),
        _loss,
        REGRESSION,
        lambda layer, p, pm, t, tm: tF.mse_loss(p, t, reduction="none"),
    ),
    CompatInfo(
        "MaskedBCEWithLogitsLoss",
        (mnn.MaskedBCEWithLogitsLoss, F.masked_binary_cross_entropy_with_logits),
        mnn.MaskedBCEWithLogitsLoss,
        _loss,
        binary_targets(),
        lambda layer, p, pm, t, tm: tF.binary_cross_entropy_with_logits(p, t),
    ),
    CompatInfo(
        "MaskedCrossEntropyLoss",
        (mnn.MaskedCrossEntropyLoss, F.masked_cross_entropy),
        mnn.MaskedCrossEntropyLoss,
        _ce,
        class_targets(),
        lambda layer, logits, target, m: tF.cross_entropy(logits, torch.where(m, target, 0)),
    ),
]
