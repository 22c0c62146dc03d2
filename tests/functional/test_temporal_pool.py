"""masked_temporal_pool against naive float64 loops."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn.functional import masked_temporal_pool


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    t=st.integers(1, 6),
    f=st.integers(1, 3),
    per_feature=st.booleans(),
    mode=st.sampled_from(["mean", "max", "last"]),
    seed=st.integers(0, 2**16),
)
def test_matches_naive(n: int, t: int, f: int, per_feature: bool, mode: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, f, generator=gen, dtype=torch.float64)
    mask = torch.rand(n, t, f if per_feature else 1, generator=gen) > 0.4
    xb = torch.where(mask, x, torch.nan).requires_grad_(True)
    out = masked_temporal_pool(xb, mask, mode)
    ref = torch.zeros(n, f, dtype=torch.float64)
    for b in range(n):
        for c in range(f):
            steps = [s for s in range(t) if mask[b, s, c if per_feature else 0]]
            if not steps:
                continue
            vals = x[b, steps, c]
            ref[b, c] = {"mean": vals.mean(), "max": vals.max(), "last": vals[-1]}[mode]
    torch.testing.assert_close(out.data, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(out.mask.expand(n, f), mask.any(1).expand(n, f))
    (g,) = torch.autograd.grad(out.data.sum(), [xb])
    assert bool(g.isfinite().all()) and bool((g[~mask.expand_as(x)] == 0).all())


def test_time_first_and_sequence_mask() -> None:
    x = torch.arange(12.0).view(2, 3, 2)  # (N, T, F)
    m = torch.tensor([[1, 1, 0], [0, 0, 0]])
    last = masked_temporal_pool(x, m, "last")
    assert last.data.tolist() == [[2.0, 3.0], [0.0, 0.0]]
    first = masked_temporal_pool(x.transpose(0, 1), m.t(), "last", time_dim=0)
    assert torch.equal(first.data, last.data) and torch.equal(first.mask, last.mask)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        masked_temporal_pool(torch.zeros(2, 3, 1), torch.ones(2, 3), "median")
    with pytest.raises(ValueError, match="time_dim 3 is out of range"):
        masked_temporal_pool(torch.zeros(2, 3, 1), torch.ones(2, 3), "mean", time_dim=3)
    with pytest.raises(ValueError, match=r"masked_temporal_pool: mask shape \(2, 4\)"):
        masked_temporal_pool(torch.zeros(2, 3, 1), torch.ones(2, 4), "mean")


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(0, 3),
    f=st.integers(1, 3),
    per_feature=st.booleans(),
    mode=st.sampled_from(["mean", "max", "last"]),
    time_first=st.booleans(),
)
def test_no_time_step_gives_zeros_and_a_false_mask(
    n: int, f: int, per_feature: bool, mode: str, time_first: bool
) -> None:
    # T = 0: 'max' and 'last' raised IndexError where 'mean' returned zeros with a False mask.
    x = torch.zeros(n, 0, f)
    m = torch.zeros(n, 0, f if per_feature else 1, dtype=torch.bool)
    if time_first:
        x, m = x.transpose(0, 1), m.transpose(0, 1)
    out = masked_temporal_pool(x, m, mode, time_dim=0 if time_first else 1)
    assert out.data.shape == (n, f) and out.mask.shape == (n, f)
    assert bool((out.data == 0).all()) and not bool(out.mask.any())


def test_two_dimensional_data_is_pooled_along_time_dim_as_given() -> None:
    """The functional indexes the data as given (like torch.mean's dim): (N, T) scalar steps
    along the default time_dim=1, one (T, F) sequence with time_dim=0 (the Module instead
    takes every 2-d input as one unbatched (T, F) sequence)."""
    x = torch.tensor([[1.0, 2.0, 4.0], [3.0, 5.0, 7.0]])
    m = torch.tensor([[True, True, False], [False, True, True]])
    by_row = masked_temporal_pool(x, m, "mean")
    assert by_row.data.tolist() == [1.5, 6.0] and by_row.mask.tolist() == [True, True]
    by_column = masked_temporal_pool(x, m, "last", time_dim=0)
    assert by_column.data.tolist() == [1.0, 5.0, 7.0] and by_column.mask.tolist() == [True, True, True]
