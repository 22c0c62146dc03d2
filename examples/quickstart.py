"""Quickstart: a masked input through a fill, a masked loss and the contract check.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import torch

from masknn import Masked, masks
from masknn.functional import masked_mean, masked_mse_loss
from masknn.nn import Fill, LearnedFill, MaskChannel
from masknn.testing import assert_no_leakage


def main() -> None:
    torch.manual_seed(0)
    # A batch of 4 single-channel 16x16 "scenes" with cloud-shaped gaps (30 % missing).
    valid = masks.cloud_mask((4, 1, 16, 16), coverage=0.3, seed=0)
    scene = torch.randn(4, 1, 16, 16)
    scene = torch.where(valid, scene, torch.tensor(float("nan")))  # holes hold NaN
    x = Masked.from_nan(scene)
    print(f"valid fraction: {x.valid_fraction():.3f}")
    print("per-sample mean of valid pixels:", masked_mean(x.data, x.mask, dim=(1, 2, 3)).data)

    # Baselines: mean fill, learned token, mask as an extra channel.
    print("mean-filled has NaN:", bool(Fill("mean")(x).data.isnan().any()))
    stacked = MaskChannel()(x)
    print("with mask channel:", tuple(stacked.data.shape))
    token = LearnedFill(1)(x)
    print("learned fill output mask all valid:", bool(token.mask.all()))

    # A masked loss ignores the holes, whatever they hold.
    pred = torch.zeros_like(scene, requires_grad=True)
    loss = masked_mse_loss(pred, scene, x.mask)
    loss.backward()
    assert pred.grad is not None
    zero_at_holes = bool((pred.grad[~x.full_mask()] == 0).all())
    print(f"masked MSE: {loss.item():.4f}; gradient at holes all zero: {zero_at_holes}")

    # The contract checker: NaN/Inf/1e30 at masked positions never reach a valid output.
    assert_no_leakage(Fill("mean"), x, fully_masked_zero=False)
    print("assert_no_leakage(Fill('mean')): passed")


if __name__ == "__main__":
    main()
