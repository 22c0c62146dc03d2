"""Contract rows for the foundation Modules: fills, masking, losses."""

from __future__ import annotations

import torch

from masknn import Masked
from masknn import nn as mnn
from tests.module_db import ModuleInfo


def _image() -> tuple[Masked]:
    return (Masked(torch.randn(3, 4, 6, 6), torch.rand(3, 1, 6, 6) > 0.4),)


def _image_per_channel() -> tuple[Masked]:
    return (Masked(torch.randn(3, 4, 6, 6), torch.rand(3, 4, 6, 6) > 0.4),)


def _seq() -> tuple[Masked]:
    return (Masked(torch.randn(3, 7, 5), torch.rand(3, 7) > 0.4),)


def _loss_inputs() -> tuple[Masked, Masked]:
    pred = Masked(torch.randn(3, 4, 5), torch.rand(3, 4, 5) > 0.3)
    target = Masked(torch.randn(3, 4, 5), torch.rand(3, 1, 5) > 0.3)
    return pred, target


def _binary_inputs() -> tuple[Masked, Masked]:
    pred = Masked(torch.randn(3, 4, 5), torch.rand(3, 4, 5) > 0.3)
    target = Masked((torch.rand(3, 4, 5) > 0.5).float(), torch.rand(3, 4, 5) > 0.3)
    return pred, target


def _ce_inputs() -> tuple[Masked, torch.Tensor, torch.Tensor]:
    logits = Masked(torch.randn(3, 5, 4), torch.ones(1, 1, 1, dtype=torch.bool))
    target = torch.randint(0, 5, (3, 4))
    mask = torch.rand(3, 4) > 0.3
    return logits, target, mask


def _ce_call(
    module: torch.nn.Module, logits: Masked, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    # Masked *targets* hold garbage; the masked logits columns are perturbed by the checker.
    return module(logits, torch.where(mask, target, torch.full_like(target, -7)), mask)


def _ce_input_masked() -> tuple[Masked, torch.Tensor, torch.Tensor]:
    logits = Masked(torch.randn(3, 5, 4), torch.rand(3, 1, 4) > 0.3)
    return logits, torch.randint(0, 5, (3, 4)), torch.ones(3, 4, dtype=torch.bool)


def _ce_class_last() -> tuple[Masked, torch.Tensor, torch.Tensor]:
    # Keras' layout: per-timestep logits (N, T, C), whole steps masked, target and mask (N, T).
    logits = Masked(torch.randn(3, 4, 5), torch.rand(3, 4, 1) > 0.3)
    return logits, torch.randint(0, 5, (3, 4)), torch.rand(3, 4) > 0.2


FILL = {"fully_masked_zero": False}

ENTRIES = [
    ModuleInfo(mnn.Fill, lambda: mnn.Fill("zero"), _image, id="Fill-zero", options=FILL),
    ModuleInfo(mnn.Fill, lambda: mnn.Fill("constant", 2.5), _image, id="Fill-constant", options=FILL),
    ModuleInfo(mnn.Fill, lambda: mnn.Fill("mean"), _image_per_channel, id="Fill-mean", options=FILL),
    ModuleInfo(
        mnn.Fill,
        lambda: mnn.Fill("running_mean", num_channels=4),
        _image,
        id="Fill-running_mean",
        options=FILL,
    ),
    ModuleInfo(mnn.LearnedFill, lambda: mnn.LearnedFill(4), _image, options=FILL),
    ModuleInfo(
        mnn.LearnedFill, lambda: mnn.LearnedFill(4), _image_per_channel, id="LearnedFill-pc", options=FILL
    ),
    ModuleInfo(
        mnn.Fill,
        lambda: mnn.Fill("constant", -1.0),
        _image_per_channel,
        id="Fill-constant-pc",
        options=FILL,
    ),
    ModuleInfo(
        mnn.LearnedFill, lambda: mnn.LearnedFill(5, channel_dim=-1), _seq, id="LearnedFill-seq", options=FILL
    ),
    ModuleInfo(mnn.MaskChannel, mnn.MaskChannel, _image, options=FILL),
    ModuleInfo(
        mnn.MaskChannel, mnn.MaskChannel, _image_per_channel, id="MaskChannel-per-channel", options=FILL
    ),
    ModuleInfo(mnn.MaskFromValue, lambda: mnn.MaskFromValue(0.0), _seq),
    ModuleInfo(mnn.Unwrap, mnn.Unwrap, _image),
    ModuleInfo(mnn.MaskedMSELoss, mnn.MaskedMSELoss, _loss_inputs),
    ModuleInfo(mnn.MaskedMSELoss, lambda: mnn.MaskedMSELoss("none"), _loss_inputs, id="MaskedMSELoss-none"),
    ModuleInfo(mnn.MaskedL1Loss, lambda: mnn.MaskedL1Loss("sum"), _loss_inputs),
    ModuleInfo(mnn.MaskedSmoothL1Loss, lambda: mnn.MaskedSmoothL1Loss(beta=0.5), _loss_inputs),
    ModuleInfo(mnn.MaskedBCEWithLogitsLoss, mnn.MaskedBCEWithLogitsLoss, _binary_inputs),
    ModuleInfo(mnn.MaskedCrossEntropyLoss, mnn.MaskedCrossEntropyLoss, _ce_inputs, call=_ce_call),
    ModuleInfo(
        mnn.MaskedCrossEntropyLoss,
        mnn.MaskedCrossEntropyLoss,
        _ce_input_masked,
        id="MaskedCrossEntropyLoss-masked-logits",
    ),
    ModuleInfo(
        mnn.MaskedCrossEntropyLoss,
        lambda: mnn.MaskedCrossEntropyLoss("none", label_smoothing=0.1, class_dim=-1),
        _ce_class_last,
        id="MaskedCrossEntropyLoss-class-last",
    ),
]
