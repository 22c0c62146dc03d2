"""A small masked CNN classifier built only from masknn layers, in a plain ``nn.Sequential``.

The task (generated, no download): tell images with horizontal stripes from images
with vertical stripes when 40 % of the pixels are missing (NaN, cloud-shaped holes).
The mask travels through the network with the data (seed 000: "the mask should be
treated as part of the input itself, propagating through the network").

Run: python examples/masked_cnn_classifier.py
"""

from __future__ import annotations

import torch
from torch import nn

from masknn import Masked, masks
from masknn import nn as mnn
from masknn.functional import masked_cross_entropy


def make_model(classes: int = 2) -> nn.Sequential:
    return nn.Sequential(
        mnn.PartialConv2d(1, 16, 3, padding=1),
        mnn.MaskedBatchNorm2d(16),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
        mnn.PartialConv2d(16, 32, 3, padding=1),
        mnn.MaskedBatchNorm2d(32),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedGlobalAvgPool(),
        mnn.Elementwise(nn.Dropout(0.1)),
        mnn.MaskedLinear(32, classes),
    )


def make_batch(n: int, seed: int, size: int = 16) -> tuple[Masked, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=gen)
    freq = torch.rand(n, generator=gen) * 0.6 + 0.6
    phase = torch.rand(n, generator=gen) * 6.28
    coord = torch.arange(size, dtype=torch.float32)
    rows = torch.sin(coord.view(1, size, 1) * freq.view(n, 1, 1) + phase.view(n, 1, 1)).expand(n, size, size)
    img = torch.where(labels.view(n, 1, 1) == 0, rows, rows.transpose(1, 2))
    img = img + 0.3 * torch.randn(n, size, size, generator=gen)
    valid = masks.cloud_mask((n, 1, size, size), coverage=0.4, seed=seed)
    img = torch.where(valid, img.unsqueeze(1), torch.tensor(float("nan")))  # holes hold NaN
    return Masked.from_nan(img), labels


def main(steps: int = 60, batch: int = 32) -> float:
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        x, y = make_batch(batch, seed=step)
        out = model(x)
        loss = masked_cross_entropy(out.data, y, out.mask.squeeze(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = make_batch(256, seed=10_000)
    with torch.no_grad():
        pred = model(x).data.argmax(1)
    acc = float((pred == y).float().mean())
    print(f"test accuracy with 40 % of pixels missing: {acc:.3f}")
    return acc


if __name__ == "__main__":
    main()
