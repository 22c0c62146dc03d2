"""Masked linear and flatten."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import masknn.functional as MF


def test_masked_linear_modes_match_loop() -> None:
    torch.manual_seed(0)
    m = torch.rand(4, 5) > 0.5
    m[0] = False
    x = torch.where(m, torch.randn(4, 5, dtype=torch.float64), torch.nan)
    w, b = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    zero = MF.masked_linear(x, m, w, b)
    part = MF.masked_linear(x, m, w, b, mode="partial")
    assert zero.mask.shape == (4, 1)
    for i in range(4):
        cnt = int(m[i].sum())
        raw = sum(w[:, j] * x[i, j] for j in range(5) if m[i, j])
        if cnt == 0:
            assert not zero.mask[i, 0] and bool((zero.data[i] == 0).all()) and bool((part.data[i] == 0).all())
            continue
        torch.testing.assert_close(zero.data[i], raw + b)
        torch.testing.assert_close(part.data[i], raw * 5 / cnt + b)


def test_masked_linear_rows_and_all_valid() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    rows = torch.rand(2, 7) > 0.5
    w, b = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    for mode in ("zero", "partial"):
        out = MF.masked_linear(x, rows, w, b, mode)
        assert out.mask.shape == (2, 7, 1)
        torch.testing.assert_close(out.data[rows], F.linear(x, w, b)[rows])
        assert bool((out.data[~rows] == 0).all())
    ones = torch.ones(1, 1, 5, dtype=torch.bool)
    torch.testing.assert_close(MF.masked_linear(x, ones, w, b, "partial").data, F.linear(x, w, b))


def test_masked_linear_gradcheck_and_errors() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    m = torch.rand(4, 5) > 0.4
    assert torch.autograd.gradcheck(lambda x, w: MF.masked_linear(x, m, w, None, "partial").data, (x, w))
    with pytest.raises(ValueError, match="masked_linear: mode must be one of"):
        MF.masked_linear(x, m, w, None, "other")
    with pytest.raises(
        ValueError, match=r"masked_linear: data shape \(4, 5\) does not end with in_features = 6"
    ):
        MF.masked_linear(x, m, torch.randn(3, 6))


def test_masked_flatten() -> None:
    x = torch.randn(2, 3, 4, 5)
    shared = torch.rand(2, 1, 4, 5) > 0.5
    out = MF.masked_flatten(x, shared)
    assert out.data.shape == (2, 60) and torch.equal(out.mask, shared.expand(2, 3, 4, 5).reshape(2, 60))
    rows = torch.rand(2, 1, 1, 1) > 0.5
    out = MF.masked_flatten(x, rows, 1, 2)
    assert out.data.shape == (2, 12, 5) and out.mask.shape == (2, 1, 1)
    assert bool((out.data[~rows.view(2)] == 0).all())
