"""fill and mask_channel."""

from __future__ import annotations

import math

import pytest
import torch

from masknn.functional import fill, mask_channel, masked_mean


def test_zero_and_constant() -> None:
    x = torch.tensor([[[1.0, math.nan, math.inf]]])
    m = torch.tensor([[[True, False, False]]])
    assert fill(x, m, "zero").tolist() == [[[1.0, 0.0, 0.0]]]
    assert fill(x, m, "constant", value=-1.0).tolist() == [[[1.0, -1.0, -1.0]]]


def test_mean_is_per_sample_per_channel() -> None:
    x = torch.randn(3, 2, 5, 5)
    m = torch.rand(3, 2, 5, 5) > 0.4
    m[1, 0] = False  # a fully masked sample/channel is filled with 0
    xn = torch.where(m, x, torch.tensor(math.nan))
    out = fill(xn, m, "mean")
    means = masked_mean(x, m, dim=(2, 3), keepdim=True).data
    want = torch.where(m, x, means)
    torch.testing.assert_close(out, want)
    assert out[1, 0].eq(0).all()


def test_mean_for_sequences_with_dims() -> None:
    x = torch.randn(2, 6, 3)
    m = torch.rand(2, 6, 1) > 0.3
    out = fill(x, m, "mean", dims=(1,))
    want = torch.where(m, x, masked_mean(x, m, dim=1, keepdim=True).data)
    torch.testing.assert_close(out, want)
    with pytest.raises(ValueError, match="pass dims explicitly"):
        fill(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), "mean")


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="fill: strategy must be one of"):
        fill(torch.zeros(1, 1, 1), torch.ones(1, 1, 1, dtype=torch.bool), "median")


def test_gradients_do_not_reach_masked_positions() -> None:
    x = torch.tensor([[[1.0, math.nan, 3.0]]], requires_grad=True)
    m = torch.tensor([[[True, False, True]]])
    fill(x, m, "mean").sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [[[1.5, 0.0, 1.5]]]


def test_mask_channel_shared_and_per_channel() -> None:
    x = torch.randn(2, 3, 4, 4)
    shared = torch.rand(2, 1, 4, 4) > 0.5
    out = mask_channel(torch.where(shared, x, torch.tensor(math.nan)), shared)
    assert out.data.shape == (2, 4, 4, 4)
    assert torch.equal(out.data[:, 3:], shared.float())
    assert torch.equal(out.data[:, :3], torch.where(shared, x, 0.0))
    assert out.mask[:, 3].all() and torch.equal(out.mask[:, :3], shared.expand(2, 3, 4, 4))
    per = torch.rand(2, 3, 4, 4) > 0.5
    assert mask_channel(x, per).data.shape == (2, 6, 4, 4)
