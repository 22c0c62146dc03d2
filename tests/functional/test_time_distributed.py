"""time_distributed_linear against nn.Linear on the valid rows (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn.functional import time_distributed_linear


@settings(max_examples=25, deadline=None)
@given(
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    f=st.integers(1, 5),
    o=st.integers(1, 4),
    bias=st.booleans(),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_matches_linear_on_valid_rows_with_gradients(
    lead: list[int], f: int, o: int, bias: bool, p: float, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, f, generator=gen, dtype=torch.float64)
    valid = torch.rand(*lead, 1, generator=gen) >= p
    w = torch.randn(o, f, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(o, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    x_bad = torch.where(valid, x, torch.nan).requires_grad_(True)
    out = time_distributed_linear(x_bad, valid, w, b)
    xr = x.clone().requires_grad_(True)
    ref = torch.where(valid, F.linear(xr, w, b), 0)
    torch.testing.assert_close(out.data, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(out.mask, valid)
    g = torch.randn(out.data.shape, generator=gen, dtype=torch.float64)
    params = [w] + ([b] if b is not None else [])
    grads = torch.autograd.grad((out.data * g).sum(), [x_bad, *params])
    ref_grads = torch.autograd.grad((ref * g).sum(), [xr, *params])
    assert bool((grads[0].masked_select(~valid.expand_as(x)) == 0).all())
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_sequence_mask_and_no_work_on_masked_rows() -> None:
    x = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 1, 0, 1]])
    w, b = torch.randn(4, 3), torch.randn(4)
    out = time_distributed_linear(x, mask, w, b)
    assert out.mask.shape == (2, 5, 1)
    assert bool((out.data[0, 2:] == 0).all())
    torch.testing.assert_close(out.data[1, 2], F.linear(x[1, 2], w, b))


def test_per_feature_mask_points_to_masked_linear() -> None:
    with pytest.raises(ValueError, match=r"masknn.nn.MaskedLinear"):
        time_distributed_linear(torch.randn(2, 5, 3), torch.rand(2, 5, 3) > 0.5, torch.randn(4, 3))


def test_bad_shapes() -> None:
    with pytest.raises(
        ValueError, match=r"time_distributed_linear: weight \(4, 2\) does not fit data \(2, 5, 3\)"
    ):
        time_distributed_linear(torch.randn(2, 5, 3), torch.ones(2, 5), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"time_distributed_linear: mask shape \(2, 6, 1\)"):
        time_distributed_linear(torch.randn(2, 5, 3), torch.ones(2, 6, 1), torch.randn(4, 3))
