"""masknn layers in a plain nn.Sequential, and under torch.compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn
from masknn.testing import assert_no_leakage


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        mnn.PartialConv2d(3, 8, 3, padding=1),
        mnn.MaskedBatchNorm2d(8),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
        mnn.PartialConv2d(8, 8, 3, padding=1, bias=False),
        mnn.MaskedGroupNorm(2, 8),
        mnn.Elementwise(nn.GELU()),
        mnn.MaskedAvgPool2d(2),
        mnn.MaskedUpsample(scale_factor=2, mode="bilinear"),
        mnn.MaskedAdaptiveAvgPool2d(2),
        mnn.MaskedFlatten(),
        mnn.MaskedLinear(32, 4, mode="partial"),
    )


def tiny_cnn() -> nn.Sequential:
    return nn.Sequential(
        mnn.PartialConv2d(3, 4, 3, padding=1),
        mnn.MaskedBatchNorm2d(4),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
        mnn.MaskedGlobalAvgPool(),
        mnn.MaskedLinear(4, 2, mode="partial"),
    )


def _input() -> Masked:
    torch.manual_seed(1)
    return Masked(torch.randn(4, 3, 16, 16), torch.rand(4, 1, 16, 16) > 0.4)


def test_plain_sequential_passes_masked_through_and_honours_the_contract() -> None:
    torch.manual_seed(0)
    model = small_cnn()
    out = model(_input())
    assert isinstance(out, Masked) and out.data.shape == (4, 4) and out.mask.shape == (4, 1)
    assert_no_leakage(model, _input(), rtol=1e-5, atol=1e-6)


@pytest.mark.compile
def test_torch_compile_gives_the_eager_output() -> None:
    """torch.compile (inductor) of a tiny masked CNN equals eager (forward and gradients), in train and eval.

    Marked ``compile``: it takes tens of seconds on 2 CPU cores (deselect with ``-m "not compile"``).
    """
    torch.manual_seed(0)
    model = tiny_cnn()
    compiled_model = tiny_cnn()
    compiled_model.load_state_dict(model.state_dict())
    compiled = torch.compile(compiled_model, dynamic=False)
    for train in (True, False):
        model.train(train)
        compiled_model.train(train)
        x = _input()
        data = x.data.clone().requires_grad_()
        data_c = x.data.clone().requires_grad_()
        eager = model(Masked(data, x.mask))
        out = compiled(Masked(data_c, x.mask))
        assert isinstance(out, Masked)
        torch.testing.assert_close(out.data, eager.data, rtol=1e-4, atol=1e-5)
        assert torch.equal(out.mask, eager.mask)
        if train:
            eager.data.square().sum().backward()
            out.data.square().sum().backward()
            assert data.grad is not None and data_c.grad is not None
            torch.testing.assert_close(data_c.grad, data.grad, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(compiled_model[1].running_mean, model[1].running_mean)
