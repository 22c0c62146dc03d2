"""Masked up-sampling: nearest and normalized (bi/tri)linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import masknn.functional as MF
from masknn.functional._select import composable_only


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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("mode", "shape", "scale"), [("trilinear", (1, 1, 2, 2, 2), 40), ("linear", (1, 1, 3), 2000)]
)
def test_half_precision_with_tiny_weights_is_the_valid_value(
    dtype: torch.dtype, mode: str, shape: tuple[int, ...], scale: int
) -> None:
    # Regression: one valid input whose interpolation weight is tiny far from it. The
    # numerator was interpolated in float16 (underflow; 1/weight overflowed to Inf) or
    # bfloat16 (rounded to 0), so the normalized mean of a constant 3 came out Inf, 5.9 or 0.
    x = torch.full(shape, 3.0, dtype=dtype)
    m = torch.zeros(shape, dtype=torch.bool)
    m.view(-1)[0] = True
    out = MF.masked_interpolate(x, m, scale_factor=scale, mode=mode)
    valid = out.mask.expand_as(out.data)
    assert bool(valid.any())
    assert torch.equal(out.data[valid], torch.full_like(out.data[valid], 3.0))


@pytest.mark.parametrize("path", ["eager", "composable"])
def test_nan_cotangent_at_an_invalid_output_leaves_the_input_gradient_finite(path: str) -> None:
    # Regression (issue 8): out = interp(x⊙m) · (1 / interp(m)) multiplied the gradient of an
    # invalid output by 0 and then by the interpolation weights (NaN · 0 = NaN). The middle
    # output lies exactly on the masked input, so its neighbours get weight 0 from it.
    x = torch.tensor([[[1.0, float("nan"), 3.0]]], requires_grad=True)
    m = torch.tensor([[[True, False, True]]])
    with composable_only() if path == "composable" else torch.enable_grad():
        out = MF.masked_interpolate(x, m, size=5, mode="linear", align_corners=True)
        cot = torch.where(out.mask, torch.ones_like(out.data), torch.nan)
        (g,) = torch.autograd.grad(out.data, x, cot)
    assert out.mask.tolist() == [[[True, True, False, True, True]]]
    assert g.tolist() == [[[2.0, 0.0, 2.0]]]
