"""Seed 000, example 2 ("Masking with learnable embeddings"), rewritten with masknn.

The article's code:

    Conv2D(32, (3, 3), input_shape=(28, 28, 1)),
    Lambda(lambda x: tf.where(tf.equal(mask, 0), tf.zeros_like(x), x)),

is wrong in two ways: the 28x28 input mask is applied to the 26x26 output of a "valid"
3x3 convolution (the shapes do not even match), and it writes zeros, not a learned
embedding. The mask of a convolution's output is not the input mask: it has to be
propagated (a 3x3 window is valid where it holds a valid input).

The right ways, with masknn:

* a learned token where data is missing, *before* the first layer: ``LearnedFill``
  (the mask token of masked autoencoders), optionally with the mask as a channel;
* or partial convolution, which propagates the mask itself, and ``PostMask`` to mask any
  plain module's output with that propagated mask.

Run: python examples/seed000_learnable_embedding.py
"""

from __future__ import annotations

import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn


def main() -> None:
    torch.manual_seed(0)
    mask = torch.rand(8, 1, 28, 28) > 0.3
    x = Masked(torch.where(mask, torch.rand(8, 1, 28, 28), torch.tensor(float("nan"))), mask)

    # A learned embedding for missing pixels, then a plain CNN (mask kept as a channel).
    learned = nn.Sequential(
        mnn.MaskChannel(),  # (N, 2, 28, 28): data and mask; the mask channel is valid everywhere
        mnn.LearnedFill(2),  # learned token per channel at the missing data pixels
        mnn.Unwrap(),
        nn.Conv2d(2, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 13 * 13, 10),
    )
    out = learned(x)
    out.sum().backward()
    token = learned[1].token
    print("logits", tuple(out.shape), "finite:", bool(torch.isfinite(out).all()))
    has_grad = token.grad is not None and bool(token.grad.abs().sum() > 0)
    print("the learned token receives a gradient:", has_grad)

    # The article's intent done right: the conv output's own mask, propagated.
    conv = mnn.PartialConv2d(1, 32, 3)  # "valid" 3x3: output 26x26, mask 26x26
    y = conv(x)
    print("input mask", tuple(x.mask.shape), "-> propagated output mask", tuple(y.mask.shape))
    # Post-masking any plain module with the propagated mask:
    post = mnn.PostMask(nn.Conv2d(32, 32, 1))
    z = post(y)
    zeros = bool((z.data[~z.full_mask()] == 0).all())
    print("post-masked output is exactly 0 where the mask is False:", zeros)


if __name__ == "__main__":
    main()
