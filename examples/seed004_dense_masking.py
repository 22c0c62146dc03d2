"""Seed 004 ("How can I implement masking in a Keras dense layer?"), rewritten with masknn.

The article's three approaches on a padded batch (2 sequences, 5 steps, 3 features):

1. pre-masking (zero the padded rows, then Dense): it claims this is "the most
   computationally efficient approach since the masked values don't participate in the
   matrix multiplication". False in Keras: the zeroed rows are still multiplied, and the
   padded outputs equal the bias, not 0. masknn's ``TimeDistributedLinear`` really skips
   them (gather the valid rows, one matmul, scatter back).
2. post-masking (Dense on everything, then zero the padded outputs): masknn's
   ``PostMask(module)`` does this for any module, NaN-safe.
3. a Masking layer before Dense: the article says Dense "doesn't directly leverage the
   mask"; in Keras 3 Dense does pass the mask on to the next layer. masknn's
   ``MaskFromValue`` feeds a ``Masked`` to the next layer the same way.

Run: python examples/seed004_dense_masking.py
"""

from __future__ import annotations

import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn


def main() -> None:
    torch.manual_seed(0)
    input_data = torch.tensor(
        [
            [[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 0, 0], [0, 0, 0]],
            [[10, 11, 12], [13, 14, 15], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
        ],
        dtype=torch.float32,
    )
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)  # (N, T)
    x = Masked(input_data, mask)

    # 1. Pre-masking done right: only the 5 valid rows are computed.
    dense = mnn.TimeDistributedLinear(3, 4)
    out1 = dense(x)
    print("1. time-distributed dense, valid rows only:\n", out1.data)

    # What Keras-style pre-masking gives: the padded rows hold the bias.
    plain = nn.Linear(3, 4)
    plain.load_state_dict(dense.state_dict())
    keras_like = plain(input_data * mask.unsqueeze(-1))
    bias_rows = torch.allclose(keras_like[0, 3], plain.bias)
    print("   plain Linear on zero-padded rows gives the bias there:", bias_rows)

    # 2. Post-masking any module.
    out2 = mnn.PostMask(plain)(x)
    print("2. post-masked equals the time-distributed result:", torch.allclose(out1.data, out2.data))

    # 3. A Masking layer: the mask comes from the padding value and travels on.
    model = nn.Sequential(mnn.MaskFromValue(0.0), mnn.TimeDistributedLinear(3, 4))
    out3 = model(input_data)
    print("3. mask derived from the padding:", out3.mask[..., 0].int().tolist())


if __name__ == "__main__":
    main()
