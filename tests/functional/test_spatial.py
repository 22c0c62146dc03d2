"""The bitwise select helper of the CNN ops: exact ``torch.where(mask, x, 0)`` for every float dtype."""

from __future__ import annotations

import pytest
import torch

from masknn.functional._spatial import _select_into, select

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
_INT = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_select_is_exact_for_nan_inf_and_signed_zero(dtype: torch.dtype) -> None:
    x = torch.tensor([1.5, float("nan"), float("inf"), -float("inf"), -0.0, float("nan")], dtype=dtype)
    m = torch.tensor([True, False, False, False, True, True])
    y = select(x, m)
    assert bool((y[~m] == 0).all()) and not bool(torch.signbit(y[~m]).any())  # +0.0
    assert y[0] == 1.5 and bool(torch.signbit(y[4])) and bool(torch.isnan(y[5]))  # valid bits kept
    into = _select_into(x.view(2, 3), m.view(2, 3)).view(-1)  # the (N, C, ...) helper
    assert torch.equal(into.view(_INT[dtype]), y.view(_INT[dtype]))  # bit for bit (NaN != NaN)


@pytest.mark.parametrize("dtype", DTYPES)
def test_select_non_contiguous_broadcast_and_gradient(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 5, generator=g).to(dtype).transpose(1, 2).requires_grad_(True)
    m = torch.rand(4, 1, 6, generator=g) > 0.5
    y = select(x, m)
    assert torch.equal(y, torch.where(m, x, torch.zeros((), dtype=dtype)))
    y.sum().backward()  # an expanded (stride 0) incoming gradient
    assert x.grad is not None
    assert torch.equal(x.grad, m.expand(x.shape).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_select_accepts_tensors_with_the_negative_bit(dtype: torch.dtype) -> None:
    # Regression: Tensor.view(int dtype) raises for a tensor with the negative bit set.
    base = torch.randn(6, generator=torch.Generator().manual_seed(1)).to(dtype)
    x = torch._neg_view(base)
    m = torch.tensor([True, False, True, True, False, True])
    expected = torch.where(m, -base, torch.zeros((), dtype=dtype))
    assert torch.equal(select(x, m), expected)
    assert torch.equal(_select_into(x.view(3, 2), m.view(3, 2)).view(-1), expected)
