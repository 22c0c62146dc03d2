"""Masked up-sampling: nearest and normalized (bi/tri)linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import masknn.functional as MF


def test_nearest_resizes_data_and_mask_alike() -> None:
    torch.manual_seed(0)
    m = torch.rand(2, 1, 4, 5) > 0.5
    x = torch.where(m, torch.randn(2, 3, 4, 5), torch.nan)
    out = MF.masked_interpolate(x, m, scale_factor=2)
    assert torch.equal(out.mask, F.interpolate(m.float(), scale_factor=2) > 0)
    ref = F.interpolate(torch.where(m, x, 0), scale_factor=2)
    assert torch.equal(out.data, ref)


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_is_normalized_weighted_mean(align_corners: bool) -> None:
    torch.manual_seed(0)
    m = torch.rand(2, 3, 4, 5) > 0.4
    x = torch.where(m, torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.inf)
    out = MF.masked_interpolate(x, m, size=(7, 9), mode="bilinear", align_corners=align_corners)
    # Reference: the interpolation weights of every output over the inputs, from one-hot images.
    eye = torch.eye(20, dtype=torch.float64).view(20, 1, 4, 5)
    wts = F.interpolate(eye, size=(7, 9), mode="bilinear", align_corners=align_corners).view(20, 63)
    xf = torch.where(m, x, 0).view(2, 3, 20)
    mf = m.view(2, 3, 20).double()
    num, den = xf @ wts, mf @ wts
    valid = den > 0
    ref = torch.where(valid, num / den.clamp_min(1e-300), 0).view(2, 3, 7, 9)
    assert torch.equal(out.mask, valid.view(2, 3, 7, 9))
    torch.testing.assert_close(out.data, ref)


def test_all_valid_matches_plain_and_gradcheck() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    ones = torch.ones(1, 1, 3, 4, 3, dtype=torch.bool)
    torch.testing.assert_close(
        MF.masked_interpolate(x, ones, scale_factor=2, mode="trilinear").data,
        F.interpolate(x, scale_factor=2, mode="trilinear"),
    )
    m = torch.rand(1, 1, 3, 4, 3) > 0.3
    assert torch.autograd.gradcheck(
        lambda x: MF.masked_interpolate(x, m, scale_factor=2, mode="trilinear").data, (x,)
    )
    with pytest.raises(ValueError, match="masked_interpolate: mode must be one of"):
        MF.masked_interpolate(x, m, scale_factor=2, mode="bicubic")
