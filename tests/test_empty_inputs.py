"""Empty batches (N = 0) and empty spatial/time dimensions through every public Module.

The rule: follow the plain twin. Where the twin returns a result, the masknn layer returns one
of the same shape (with nothing valid where the twin would reduce over nothing, e.g. the mean of
an empty time axis, NaN in torch, is 0 with a False mask); where the twin raises, the masknn
layer raises a ``ValueError``/``TypeError`` whose message starts with its name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn

Make = Callable[[], nn.Module]


def _img(*shape: int) -> Masked:
    return Masked(torch.randn(shape), torch.ones(shape[0], 1, *shape[2:], dtype=torch.bool))


def _seq(n: int, t: int, f: int) -> Masked:
    return Masked(torch.randn(n, t, f), torch.ones(n, t, 1, dtype=torch.bool))


# (id, masknn Module, its plain twin (or None: the expected result is checked by shape only), input)
IMAGE_SHAPES = {"N=0": (0, 3, 6, 6), "H=0": (2, 3, 0, 6)}
IMAGE: list[tuple[str, Make, Make | None]] = [
    ("PartialConv2d", lambda: mnn.PartialConv2d(3, 4, 3, padding=1), lambda: nn.Conv2d(3, 4, 3, padding=1)),
    (
        "PartialConvTranspose2d",
        lambda: mnn.PartialConvTranspose2d(3, 4, 3, stride=2),
        lambda: nn.ConvTranspose2d(3, 4, 3, stride=2),
    ),
    ("MaskedMaxPool2d", lambda: mnn.MaskedMaxPool2d(2), lambda: nn.MaxPool2d(2)),
    ("MaskedAvgPool2d", lambda: mnn.MaskedAvgPool2d(2, padding=1), lambda: nn.AvgPool2d(2, padding=1)),
    ("MaskedAdaptiveAvgPool2d", lambda: mnn.MaskedAdaptiveAvgPool2d(2), lambda: nn.AdaptiveAvgPool2d(2)),
    ("MaskedAdaptiveMaxPool2d", lambda: mnn.MaskedAdaptiveMaxPool2d(2), lambda: nn.AdaptiveMaxPool2d(2)),
    ("MaskedBatchNorm2d", lambda: mnn.MaskedBatchNorm2d(3), lambda: nn.BatchNorm2d(3)),
    ("MaskedSyncBatchNorm", lambda: mnn.MaskedSyncBatchNorm(3), lambda: nn.BatchNorm2d(3)),
    ("MaskedInstanceNorm2d", lambda: mnn.MaskedInstanceNorm2d(3), lambda: nn.InstanceNorm2d(3)),
    ("MaskedGroupNorm", lambda: mnn.MaskedGroupNorm(1, 3), lambda: nn.GroupNorm(1, 3)),
    (
        "MaskedUpsample",
        lambda: mnn.MaskedUpsample(scale_factor=2, mode="bilinear"),
        lambda: nn.Upsample(scale_factor=2, mode="bilinear"),
    ),
    (
        "MaskedUpsample-nearest",
        lambda: mnn.MaskedUpsample(scale_factor=2),
        lambda: nn.Upsample(scale_factor=2),
    ),
    ("MaskedFlatten", mnn.MaskedFlatten, nn.Flatten),
    ("MaskedGlobalAvgPool", mnn.MaskedGlobalAvgPool, None),
    ("MaskedGlobalMaxPool", mnn.MaskedGlobalMaxPool, None),
    ("Fill-mean", lambda: mnn.Fill("mean"), nn.Identity),
    ("Fill-running_mean", lambda: mnn.Fill("running_mean", num_channels=3), nn.Identity),
    ("LearnedFill", lambda: mnn.LearnedFill(3), nn.Identity),
    ("MaskChannel", mnn.MaskChannel, None),
    ("Unwrap", mnn.Unwrap, nn.Identity),
    ("Elementwise", lambda: mnn.Elementwise(nn.ReLU()), nn.ReLU),
]
SEQ_SHAPES = {"N=0": (0, 5, 4), "T=0": (2, 0, 4)}
SEQ: list[tuple[str, Make, Make | None]] = [
    ("MaskedLinear", lambda: mnn.MaskedLinear(4, 2), lambda: nn.Linear(4, 2)),
    ("TimeDistributedLinear", lambda: mnn.TimeDistributedLinear(4, 2), lambda: nn.Linear(4, 2)),
    ("MaskedLayerNorm", lambda: mnn.MaskedLayerNorm(4), lambda: nn.LayerNorm(4)),
    ("MaskedTemporalPool-mean", lambda: mnn.MaskedTemporalPool("mean"), None),
    ("MaskedTemporalPool-max", lambda: mnn.MaskedTemporalPool("max"), None),
    ("MaskedTemporalPool-last", lambda: mnn.MaskedTemporalPool("last"), None),
    ("MaskFromValue", lambda: mnn.MaskFromValue(0.0), nn.Identity),
    (
        "MaskedTransformerEncoderLayer",
        lambda: mnn.MaskedTransformerEncoderLayer(4, 2, 8, batch_first=True),
        None,
    ),
    (
        "MaskedTransformerEncoder",
        lambda: mnn.MaskedTransformerEncoder(mnn.MaskedTransformerEncoderLayer(4, 2, 8, batch_first=True), 2),
        None,
    ),
]


def _run(module: Any, x: Any) -> Any:
    out = module(x)
    return out[0] if isinstance(out, tuple) and not isinstance(out, Masked) else out


def _check(name: str, make: Make, twin: Make | None, x: Masked, training: bool) -> None:
    torch.manual_seed(0)
    layer = name.split("-")[0]
    module = make().train(training)
    want: torch.Tensor | None = None
    twin_error: Exception | None = None
    if twin is not None:
        try:
            plain = twin().train(training)
            plain.load_state_dict(module.state_dict(), strict=False)
            want = plain(x.data)
        except RuntimeError as e:  # the twin refuses: masknn must refuse clearly
            twin_error = e
    if twin_error is not None:
        with pytest.raises((ValueError, TypeError)) as err:
            _run(module, x)
        assert str(err.value).startswith(f"{layer}: "), f"{name}: {err.value}"
        return
    out = _run(module, x)
    data = out.data if isinstance(out, Masked) else out
    if want is not None:
        assert data.shape == want.shape, f"{name}: {tuple(data.shape)} vs the twin's {tuple(want.shape)}"
    assert bool(torch.isfinite(data).all())
    if isinstance(out, Masked):
        mask = out.mask.expand(data.shape)
        if data.numel() and x.data.numel() == 0:
            assert not bool(mask.any()), f"{name}: valid outputs from an empty input"
        assert bool((data[~mask] == 0).all())


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", sorted(IMAGE_SHAPES))
@pytest.mark.parametrize("case", IMAGE, ids=[c[0] for c in IMAGE])
def test_images(case: tuple[str, Make, Make | None], shape: str, training: bool) -> None:
    name, make, twin = case
    _check(name, make, twin, _img(*IMAGE_SHAPES[shape]), training)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", sorted(SEQ_SHAPES))
@pytest.mark.parametrize("case", SEQ, ids=[c[0] for c in SEQ])
def test_sequences(case: tuple[str, Make, Make | None], shape: str, training: bool) -> None:
    name, make, twin = case
    _check(name, make, twin, _seq(*SEQ_SHAPES[shape]), training)


@pytest.mark.parametrize("shape", [(0, 5), (2, 0)], ids=["N=0", "T=0"])
def test_attention_and_embedding(shape: tuple[int, int]) -> None:
    mha = mnn.MaskedMultiheadAttention(4, 2, batch_first=True)
    plain = nn.MultiheadAttention(4, 2, batch_first=True)
    plain.load_state_dict(mha.state_dict())
    x = _seq(*shape, 4)
    out, _ = mha(x)
    assert out.data.shape == plain(x.data, x.data, x.data)[0].shape
    emb = mnn.MaskedEmbedding(5, 3, mask_zero=True)
    ids = torch.zeros(shape, dtype=torch.long)
    assert emb(ids).data.shape == nn.Embedding(5, 3)(ids).shape


@pytest.mark.parametrize("n", [0, 2])
def test_losses_of_nothing_are_zero(n: int) -> None:
    # A batch with no valid element gives a loss of exactly 0 (torch's mean of nothing is NaN).
    shape = (n, 3, 0) if n else (0, 3)
    pred, target = torch.randn(shape, requires_grad=True), torch.rand(shape)
    valid = torch.ones(shape, dtype=torch.bool)
    for loss in (
        mnn.MaskedMSELoss(),
        mnn.MaskedL1Loss(),
        mnn.MaskedSmoothL1Loss(),
        mnn.MaskedBCEWithLogitsLoss(),
    ):
        value = loss(pred, target, valid)
        assert value.shape == () and float(value.detach()) == 0.0
    ce = mnn.MaskedCrossEntropyLoss()(pred, torch.zeros((n, 0) if n else (0,), dtype=torch.long))
    assert float(ce.detach()) == 0.0
