"""Fill, LearnedFill, MaskChannel, MaskFromValue, Unwrap Modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from masknn import Masked
from masknn.nn import Fill, LearnedFill, MaskChannel, MaskFromValue, Unwrap


def _x() -> Masked:
    torch.manual_seed(0)
    data = torch.randn(4, 3, 5, 5)
    mask = torch.rand(4, 1, 5, 5) > 0.4
    return Masked(torch.where(mask, data, torch.tensor(math.nan)), mask)


def test_fill_outputs_are_all_valid_and_finite() -> None:
    x = _x()
    for strategy in ("zero", "constant", "mean"):
        out = Fill(strategy, value=1.5)(x)
        assert bool(out.mask.all()) and bool(torch.isfinite(out.data).all())
        assert torch.equal(out.data[x.full_mask()], x.data[x.full_mask()])
    assert Fill("constant", value=1.5)(x).data[~x.full_mask()].eq(1.5).all()


def test_running_mean_fill_train_and_eval() -> None:
    x = _x()
    layer = Fill("running_mean", num_channels=3, momentum=0.5)
    layer.train()
    out = layer(x)
    valid = x.full_mask()
    batch_mean = torch.stack([x.data[:, c][valid[:, c]].mean() for c in range(3)])
    torch.testing.assert_close(layer.running_mean, 0.5 * batch_mean)
    torch.testing.assert_close(out.data[:, 0][~valid[:, 0]], batch_mean[0].expand(int((~valid[:, 0]).sum())))
    layer.eval()
    out_eval = layer(x)
    torch.testing.assert_close(
        out_eval.data[:, 1][~valid[:, 1]], layer.running_mean[1].expand(int((~valid[:, 1]).sum()))
    )
    with pytest.raises(ValueError, match="needs num_channels"):
        Fill("running_mean")
    with pytest.raises(ValueError, match=r"Fill: expected data \(N, 3, \*\)"):
        layer(Masked(torch.zeros(2, 4, 3, 3)))
    with pytest.raises(ValueError, match="strategy must be one of"):
        Fill("median")


def test_learned_fill_token_gets_gradient_inputs_do_not() -> None:
    x = _x()
    data = x.data.clone().requires_grad_(True)
    layer = LearnedFill(3)
    out = layer(Masked(data, x.mask))
    assert bool(out.mask.all())
    out.data.sum().backward()
    assert layer.token.grad is not None
    n_masked = (~x.mask).sum().item()
    torch.testing.assert_close(layer.token.grad, torch.full((3,), float(n_masked)))
    assert data.grad is not None and data.grad[~x.full_mask()].eq(0).all()
    assert bool(torch.isfinite(data.grad).all())
    with pytest.raises(ValueError, match="LearnedFill: expected 4 channels"):
        LearnedFill(4)(x)
    assert "token" in LearnedFill(3).state_dict()


def test_mask_channel_module() -> None:
    x = _x()
    out = MaskChannel()(x)
    assert out.data.shape == (4, 4, 5, 5)
    assert torch.equal(out.data[:, 3:], x.mask.float())
    assert bool(torch.isfinite(out.data).all())


def test_mask_from_value_in_sequential() -> None:
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]]])
    model = nn.Sequential(MaskFromValue(0.0), Unwrap())
    assert torch.equal(model(x), x)
    out = MaskFromValue(0.0)(x)
    assert out.mask[..., 0].tolist() == [[True, False, True]]
    nan_pad = torch.tensor([[[math.nan, math.nan], [1.0, math.nan]]])
    out = MaskFromValue(math.nan)(nan_pad)
    assert out.mask[..., 0].tolist() == [[False, True]]
    assert out.data.tolist()[0][0] == [0.0, 0.0]


def test_plain_tensor_is_fully_valid() -> None:
    x = torch.randn(2, 3, 4, 4)
    out = Fill("mean")(x)
    assert torch.equal(out.data, x)
    assert torch.equal(Unwrap()(x), x)


def test_fill_then_plain_layers_in_sequential() -> None:
    x = _x()
    model = nn.Sequential(MaskChannel(), Fill("mean"), Unwrap(), nn.Conv2d(4, 2, 3, padding=1))
    y = model(x)
    assert y.shape == (4, 2, 5, 5) and bool(torch.isfinite(y).all())
