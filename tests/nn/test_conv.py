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


@pytest.mark.parametrize(
    ("plain_cls", "masked_cls", "shape"),
    [
        (nn.ConvTranspose1d, mnn.PartialConvTranspose1d, (2, 4, 5)),
        (nn.ConvTranspose2d, mnn.PartialConvTranspose2d, (2, 4, 4, 5)),
        (nn.ConvTranspose3d, mnn.PartialConvTranspose3d, (1, 4, 3, 4, 3)),
    ],
)
def test_transposed_padding_valid_equals_plain_at_every_position(
    plain_cls: type, masked_cls: type, shape: tuple[int, ...]
) -> None:
    """Positions no tap reaches (stride 3 > kernel 2, output_padding) hold the plain op's bias."""
    torch.manual_seed(0)
    plain = plain_cls(4, 6, 2, stride=3, output_padding=2, groups=2)
    masked = masked_cls(4, 6, 2, stride=3, output_padding=2, groups=2, padding_valid=True)
    masked.load_state_dict(plain.state_dict())
    x = torch.randn(shape)
    out = masked(x)
    torch.testing.assert_close(out.data, plain(x))
    assert bool(out.mask.all())
    # A fully masked sample still gives zeros and an all-False mask.
    m = torch.ones(shape[0], 1, *shape[2:], dtype=torch.bool)
    m[0] = False
    out = masked(Masked(torch.where(m, x, torch.nan), m))
    assert not bool(out.mask[0].any()) and bool((out.data[0] == 0).all())
    assert bool(out.mask[1:].all()) if shape[0] > 1 else True


def test_transposed_output_size_error_names_the_layer() -> None:
    up = mnn.PartialConvTranspose2d(2, 2, 3, stride=2)
    with pytest.raises(ValueError, match=r"PartialConvTranspose2d: output_size=\[40, 40\]"):
        up(torch.randn(1, 2, 5, 5), output_size=[40, 40])
