"""A small partial-convolution U-Net (Liu et al. 2018 style inpainting) built only from masknn layers.

Task (generated, no download): fill stroke-shaped holes in smooth random fields.
The encoder uses strided partial convolutions; the mask shrinks its holes layer by
layer; the decoder up-samples data and mask, concatenates the skip connection with
its own mask, and the loss is taken on the holes only.

Run: python examples/partial_conv_unet.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masknn import Masked, masks
from masknn import nn as mnn


def block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        mnn.PartialConv2d(c_in, c_out, 3, stride=stride, padding=1),
        mnn.MaskedBatchNorm2d(c_out),
        mnn.Elementwise(nn.LeakyReLU(0.2)),
    )


class PartialUNet(nn.Module):
    """Two levels down, two up; every layer takes and returns a ``Masked``."""

    def __init__(self, channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.enc1 = block(channels, width)
        self.enc2 = block(width, 2 * width, stride=2)
        self.enc3 = block(2 * width, 2 * width, stride=2)
        self.up = mnn.MaskedUpsample(scale_factor=2, mode="nearest")
        self.cat = mnn.MaskedCat(dim=1)
        self.dec2 = block(4 * width, 2 * width)
        self.dec1 = block(3 * width, width)
        self.head = mnn.PartialConv2d(width + channels, channels, 1, padding_valid=True)

    def forward(self, x: Masked) -> Masked:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(self.cat(self.up(e3), e2))
        d1 = self.dec1(self.cat(self.up(d2), e1))
        return self.head(self.cat(d1, x))


def make_batch(n: int, seed: int, size: int = 32) -> tuple[Masked, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    field = F.interpolate(
        torch.randn(n, 1, 4, 4, generator=gen), size=(size, size), mode="bicubic", align_corners=True
    )
    valid = masks.stroke_mask((n, 1, size, size), coverage=0.25, seed=seed)
    return Masked(torch.where(valid, field, torch.tensor(float("nan"))), valid), field, valid


def main(steps: int = 40, batch: int = 16) -> tuple[float, float]:
    torch.manual_seed(0)
    model = PartialUNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        x, target, valid = make_batch(batch, seed=step)
        out = model(x)
        loss = F.mse_loss(torch.where(out.mask, out.data, 0), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, target, valid = make_batch(64, seed=10_000)
    with torch.no_grad():
        out = model(x)
    holes = ~valid
    err = float(((out.data - target)[holes] ** 2).mean())
    # Baseline: fill each hole with the mean of the valid pixels of its image.
    mean = torch.where(valid, x.data, 0).sum((2, 3), keepdim=True) / valid.sum((2, 3), keepdim=True)
    base = float(((mean.expand_as(target) - target)[holes] ** 2).mean())
    filled = float(out.mask.expand_as(holes)[holes].float().mean())
    print(
        f"hole MSE: U-Net {err:.4f}, per-image mean fill {base:.4f}; "
        f"holes filled (valid output): {filled:.1%}"
    )
    return err, base


if __name__ == "__main__":
    main()
