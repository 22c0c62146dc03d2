"""Seed 000, example 1 ("Basic masking"), rewritten with masknn.

The article multiplies the input by a binary mask and feeds it to a plain CNN:

    masked_input = input_data * mask          # zero-fill
    Conv2D(32, 3) -> MaxPooling2D(2) -> Flatten -> Dense(10)

Two problems with that:

* ``input * mask`` is not masking when holes hold NaN (the usual no-data marker):
  NaN * 0 = NaN, and the NaN spreads through every convolution window;
* after the multiplication the network cannot tell a missing pixel from a dark one.

masknn keeps the mask beside the data. Below: the article's zero-fill network (with
``Fill("zero")``, NaN-safe), the same network fed the mask as an extra channel, and a
partial-convolution network whose mask propagates layer by layer. The article also
trains on random labels (``np.random.rand(1, 10)``) with categorical cross-entropy; we
use a random integer label and a masked cross-entropy instead.

Run: python examples/seed000_masked_cnn_input.py
"""

from __future__ import annotations

import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn
from masknn.testing import assert_no_leakage


def main() -> None:
    torch.manual_seed(0)
    input_data = torch.rand(1, 1, 28, 28)  # PyTorch is channels-first: (N, C, H, W)
    mask = torch.randint(0, 2, (1, 1, 28, 28)).bool()  # True = valid
    holes_hold_nan = torch.where(mask, input_data, torch.tensor(float("nan")))

    # What the article does, in PyTorch: multiply by the mask.
    naive = holes_hold_nan * mask
    print("input * mask still holds NaN:", bool(naive.isnan().any()))

    x = Masked(holes_hold_nan, mask)

    # 1. The article's network on zero-filled input (Fill is NaN-safe).
    zero_fill = nn.Sequential(
        mnn.Fill("zero"),
        mnn.Unwrap(),
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 13 * 13, 10),
    )
    # 2. The same, fed the mask as an extra channel (the article's "treat the mask as part of the input").
    mask_channel = nn.Sequential(
        mnn.MaskChannel(),
        mnn.Unwrap(),
        nn.Conv2d(2, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 13 * 13, 10),
    )
    # 3. Mask-aware layers: the mask propagates through the network.
    partial = nn.Sequential(
        mnn.PartialConv2d(1, 32, 3),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
        mnn.MaskedFlatten(),
        mnn.MaskedLinear(32 * 13 * 13, 10),
    )
    target = torch.tensor([3])
    for name, model in [("zero-fill", zero_fill), ("mask channel", mask_channel), ("partial conv", partial)]:
        out = model(x)
        logits = out.data if isinstance(out, Masked) else out
        loss = nn.functional.cross_entropy(logits, target)
        loss.backward()
        print(f"{name:13s} logits finite: {bool(torch.isfinite(logits).all())}, loss {loss.item():.3f}")

    inner = partial[:3](x)
    print(f"valid fraction: input {x.valid_fraction():.2f} -> after conv+pool {inner.valid_fraction():.2f}")
    assert_no_leakage(partial, x)
    print("assert_no_leakage(partial-convolution network): passed")


if __name__ == "__main__":
    main()
