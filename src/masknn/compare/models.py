"""The same small architectures built under each strategy: a CNN classifier and a U-Net."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn.compare.strategies import Strategy
from masknn.nn import Fill, LearnedFill, MaskChannel, Unwrap

__all__ = ["Classifier", "UNet", "build_model", "input_stage", "mask_aware_layers"]


def mask_aware_layers() -> Any:
    """The module ``masknn.nn`` if it has the mask-aware CNN layers, else a clear ImportError."""
    import masknn.nn as mnn

    needed = ("PartialConv2d", "MaskedBatchNorm2d", "MaskedMaxPool2d", "MaskedFlatten", "Elementwise")
    missing = [n for n in needed if not hasattr(mnn, n)]
    if missing:
        raise ImportError(f"masknn.compare: partial strategies need masknn.nn.{', '.join(missing)}")
    return mnn


def input_stage(strategy: Strategy, channels: int, mask_channels: int) -> tuple[nn.Module, int]:
    """The module turning a ``Masked`` input into what the first layer takes, and its channel count.

    Plain layers get a plain tensor: [MaskChannel] -> fill -> Unwrap. Partial
    layers get a ``Masked``: [MaskChannel] only (the appended mask channels are
    valid everywhere, so partial convolution sees them too).
    """
    mods: list[nn.Module] = []
    c = channels
    if strategy.mask_channel:
        mods.append(MaskChannel())
        c += mask_channels
    if strategy.layers == "plain":
        if strategy.fill == "learned":
            mods.append(LearnedFill(c))
        else:
            mods.append(Fill(strategy.fill))
        mods.append(Unwrap())
    return (nn.Sequential(*mods) if mods else nn.Identity()), c


def _block(strategy: Strategy, cin: int, cout: int) -> list[nn.Module]:
    if strategy.layers == "plain":
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    mnn = mask_aware_layers()
    return [
        mnn.PartialConv2d(cin, cout, 3, padding=1, bias=False),
        mnn.MaskedBatchNorm2d(cout),
        mnn.Elementwise(nn.ReLU()),
    ]


def _pool(strategy: Strategy) -> nn.Module:
    if strategy.layers == "plain":
        return nn.MaxPool2d(2)
    return mask_aware_layers().MaskedMaxPool2d(2)


class Classifier(nn.Module):
    """Three 3x3 conv blocks (conv, BatchNorm, ReLU; max-pool after the first two),
    then flatten and a linear head, in plain or mask-aware layers.

    Args:
        strategy: the [`Strategy`][masknn.compare.Strategy].
        channels: input channels; ``mask_channels``: channels of the input mask.
        num_classes: outputs; ``width``: channels of the first block (then 2x, 2x).
        size: input ``(H, W)``; the head sees the ``(H // 4, W // 4)`` map, flattened
            (digits need where a stroke is, which global pooling would discard).
            With partial layers, masked positions of that map enter the head as 0.
    """

    def __init__(
        self,
        strategy: Strategy,
        channels: int,
        mask_channels: int,
        num_classes: int,
        width: int = 16,
        size: tuple[int, int] = (28, 28),
    ) -> None:
        super().__init__()
        self.strategy = strategy
        self.stem, c = input_stage(strategy, channels, mask_channels)
        w = width
        layers = [*_block(strategy, c, w), _pool(strategy), *_block(strategy, w, 2 * w), _pool(strategy)]
        layers += _block(strategy, 2 * w, 2 * w)
        self.features = nn.Sequential(*layers)
        if size[0] < 4 or size[1] < 4:
            raise ValueError(f"Classifier: images must be at least 4x4, got {size}")
        if strategy.layers == "plain":
            self.pool: nn.Module = nn.Flatten()
        else:
            self.pool = nn.Sequential(mask_aware_layers().MaskedFlatten(), Unwrap())
        self.head = nn.Linear(2 * w * (size[0] // 4) * (size[1] // 4), num_classes)

    def forward(self, x: Masked | Tensor) -> Tensor:
        x = as_masked("Classifier", x)
        return self.head(self.pool(self.features(self.stem(x))))


class UNet(nn.Module):
    """A two-level U-Net (two conv blocks per level, nearest up-sampling, skip
    concatenation, 1x1 output), in plain or mask-aware layers. H and W must be
    multiples of 4.

    With partial layers, the output is ``Masked``; positions no valid input
    reaches hold 0 (the harness scores them as predictions of 0).
    """

    def __init__(
        self, strategy: Strategy, channels: int, mask_channels: int, out_channels: int = 1, width: int = 16
    ) -> None:
        super().__init__()
        self.strategy = strategy
        self.stem, c = input_stage(strategy, channels, mask_channels)
        w = width
        s = strategy

        def two(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(*_block(s, cin, cout), *_block(s, cout, cout))

        self.enc1, self.enc2, self.mid = two(c, w), two(w, 2 * w), two(2 * w, 4 * w)
        self.dec2, self.dec1 = two(6 * w, 2 * w), two(3 * w, w)
        self.down1, self.down2 = _pool(s), _pool(s)
        if s.layers == "plain":
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="nearest")
            self.out: nn.Module = nn.Conv2d(w, out_channels, 1)
        else:
            mnn = mask_aware_layers()
            self.up = mnn.MaskedUpsample(scale_factor=2, mode="nearest")
            self.cat = mnn.MaskedCat(dim=1)
            self.out = mnn.PartialConv2d(w, out_channels, 1)

    def forward(self, x: Masked | Tensor) -> Tensor:
        x = as_masked("UNet", x)
        h = self.stem(x)
        if self.strategy.layers == "plain":
            e1 = self.enc1(h)
            e2 = self.enc2(self.down1(e1))
            m = self.mid(self.down2(e2))
            d2 = self.dec2(torch.cat([self.up(m), e2], 1))
            d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
            return self.out(d1)
        e1 = self.enc1(h)
        e2 = self.enc2(self.down1(e1))
        m = self.mid(self.down2(e2))
        d2 = self.dec2(self.cat([self.up(m), e2]))
        d1 = self.dec1(self.cat([self.up(d2), e1]))
        out = self.out(d1)
        return out.data


def build_model(
    kind: str,
    strategy: Strategy,
    channels: int,
    mask_channels: int,
    outputs: int,
    width: int = 16,
    size: tuple[int, int] = (28, 28),
) -> nn.Module:
    """``kind="classify"``: [`Classifier`][masknn.compare.Classifier] for ``size`` images; ``"regress"``:
    [`UNet`][masknn.compare.UNet]."""
    if kind == "classify":
        return Classifier(strategy, channels, mask_channels, outputs, width, size)
    if kind == "regress":
        return UNet(strategy, channels, mask_channels, outputs, width)
    raise ValueError(f"build_model: kind must be 'classify' or 'regress', got {kind!r}")
