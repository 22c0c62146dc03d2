"""Masked add (union), multiply (intersection), concatenate."""

from __future__ import annotations

import pytest
import torch

import masknn.functional as MF


def test_add_mul_semantics() -> None:
    torch.manual_seed(0)
    a_m = torch.rand(2, 1, 3, 3) > 0.5
    b_m = torch.rand(2, 4, 3, 3) > 0.5
    a = torch.where(a_m, torch.randn(2, 4, 3, 3), torch.nan)
    b = torch.where(b_m, torch.randn(2, 4, 3, 3), torch.inf)
    add, mul = MF.masked_add(a, a_m, b, b_m), MF.masked_mul(a, a_m, b, b_m)
    am, bm = a_m.expand(2, 4, 3, 3), b_m
    ref = torch.where(am, a, 0) + torch.where(bm, b, 0)
    assert torch.equal(add.mask, am | bm) and torch.equal(add.data, ref)
    assert torch.equal(mul.mask, am & bm)
    assert torch.equal(mul.data, torch.where(am & bm, a * b, 0))


def test_cat_broadcasts_masks() -> None:
    a = torch.randn(2, 3, 4)
    b = torch.randn(2, 2, 4)
    a_m = torch.rand(2, 1, 4) > 0.5
    b_m = torch.rand(2, 1, 1) > 0.5
    out = MF.masked_cat([a, b], [a_m, b_m], dim=1)
    assert out.data.shape == (2, 5, 4) and out.mask.shape == (2, 5, 4)
    assert torch.equal(out.mask[:, :3], a_m.expand(2, 3, 4)) and torch.equal(
        out.mask[:, 3:], b_m.expand(2, 2, 4)
    )
    rows = MF.masked_cat([a, b], [torch.ones(2, 1, 1), torch.zeros(2, 1, 1)], dim=1)
    assert rows.mask.shape == (2, 5, 1)
    with pytest.raises(ValueError, match="masked_cat: expected as many masks as tensors"):
        MF.masked_cat([a, b], [a_m], dim=1)
    with pytest.raises(
        ValueError, match=r"masked_add: data shapes \(2, 3, 4\) and \(2, 2, 4\) do not broadcast"
    ):
        MF.masked_add(a, a_m, b, b_m)
