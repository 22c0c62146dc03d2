"""PartialConv Modules: torch twins' weights, arguments, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn


@pytest.mark.parametrize(
    ("plain_cls", "masked_cls", "shape"),
    [
        (nn.Conv1d, mnn.PartialConv1d, (2, 4, 9)),
        (nn.Conv2d, mnn.PartialConv2d, (2, 4, 9, 8)),
        (nn.Conv3d, mnn.PartialConv3d, (2, 4, 5, 6, 5)),
    ],
)
def test_state_dict_and_padding_valid_equal_plain(
    plain_cls: type, masked_cls: type, shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    plain = plain_cls(4, 6, 3, stride=2, padding=1, groups=2)
    masked = masked_cls(4, 6, 3, stride=2, padding=1, groups=2, padding_valid=True)
    masked.load_state_dict(plain.state_dict())
    x = torch.randn(shape)
    torch.testing.assert_close(masked(x).data, plain(x))
    torch.testing.assert_close(masked(Masked(x, torch.ones((1,) * len(shape)))).data, plain(x))
    assert "padding_valid=True" in repr(masked)


def test_transposed_module_output_size_and_state_dict() -> None:
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1)
    masked = mnn.PartialConvTranspose2d(4, 3, 3, stride=2, padding=1, padding_valid=True)
    masked.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, 5, 5)
    out = masked(x, output_size=[10, 10])
    torch.testing.assert_close(out.data, plain(x, output_size=[10, 10]))
    assert out.mask.shape == (1, 1, 10, 10)


def test_mask_shapes_returned() -> None:
    conv = mnn.PartialConv2d(4, 6, 3, padding=1, groups=2)
    x = torch.randn(2, 4, 5, 5)
    assert conv(Masked(x, torch.rand(2, 1, 5, 5) > 0.5)).mask.shape == (2, 1, 5, 5)
    out = conv(Masked(x, torch.rand(2, 4, 5, 5) > 0.5))
    assert out.mask.shape == (2, 6, 5, 5)
    # Per group: channels 0-2 follow the mask of input channels 0-1, channels 3-5 of 2-3.
    assert torch.equal(out.mask[:, 0], out.mask[:, 2]) and torch.equal(out.mask[:, 3], out.mask[:, 5])


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"PartialConv2d: only padding_mode='zeros' is supported"):
        mnn.PartialConv2d(3, 3, 3, padding_mode="reflect")
    with pytest.raises(TypeError, match=r"PartialConv2d: expected data as a torch\.Tensor, got list"):
        mnn.PartialConv2d(3, 3, 3)([1, 2])
    with pytest.raises(ValueError, match=r"mask shape \(2, 3, 5\) does not fit data shape \(2, 3, 5, 5\)"):
        mnn.PartialConv2d(3, 3, 3)((torch.randn(2, 3, 5, 5), torch.ones(2, 3, 5, dtype=torch.bool)))
