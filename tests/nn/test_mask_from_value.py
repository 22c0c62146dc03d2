"""MaskFromValue (Keras ``Masking``): the step mask, and what a valid step carries on."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn import Masked
from masknn import nn as mnn

NAN = float("nan")


def _grid(n: int, t: int, f: int) -> st.SearchStrategy[list[bool]]:
    return st.lists(st.booleans(), min_size=n * t * f, max_size=n * t * f)


@settings(max_examples=60, deadline=None)
@given(
    holes=_grid(2, 4, 3),
    prior=_grid(2, 4, 3),
    with_prior=st.booleans(),
    feature_dim=st.sampled_from([-1, 2]),
)
def test_masked_features_in_valid_steps_become_exact_zeros(
    holes: list[bool], prior: list[bool], with_prior: bool, feature_dim: int
) -> None:
    # Masked.from_nan(x) then MaskFromValue(nan): a step is valid when some feature is valid;
    # the features masked inside a valid step (here NaN) must reach the next layer as exact
    # zeros with a zero gradient, never as NaN.
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3)
    hole = torch.tensor(holes).view(2, 4, 3)
    keep = torch.tensor(prior).view(2, 4, 3) if with_prior else torch.ones(2, 4, 3, dtype=torch.bool)
    data = torch.where(hole, torch.full_like(x, NAN), x).requires_grad_()
    inp = Masked(data, keep) if with_prior else data
    out = mnn.MaskFromValue(NAN, feature_dim=feature_dim)(inp)
    good = keep & ~hole  # the features that are data
    assert torch.equal(out.mask, good.any(-1, keepdim=True))
    assert bool(torch.isfinite(out.data).all())
    assert torch.equal(out.data, torch.where(good, x, torch.zeros(())))
    out.data.sum().backward()
    assert data.grad is not None
    assert torch.equal(data.grad, good.float())  # 1 at data, exactly 0 at every masked feature


@settings(max_examples=30, deadline=None)
@given(prior=_grid(2, 4, 3), value=st.sampled_from([0.0, -1.0]))
def test_a_finite_mask_value_keeps_keras_semantics(prior: list[bool], value: float) -> None:
    # Keras: a step is padding when every feature equals mask_value; a valid step keeps its
    # features as they are (a feature equal to mask_value is data there). A per-feature prior
    # mask zero-fills the features it masks.
    torch.manual_seed(1)
    x = torch.randn(2, 4, 3)
    x[0, 1] = value  # a padded step
    x[1, 2, 0] = value  # a feature equal to mask_value inside a valid step
    keep = torch.tensor(prior).view(2, 4, 3)
    keep[1, 2] = True
    out = mnn.MaskFromValue(value)(Masked(x, keep))
    step = ((x != value) & keep).any(-1, keepdim=True)
    assert torch.equal(out.mask, step)
    assert torch.equal(out.data, torch.where(step & keep, x, torch.zeros(())))
    if bool(step[1, 2, 0]):
        assert out.data[1, 2, 0] == value


def test_followed_by_a_recurrent_layer_stays_finite() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3)
    x[0, 1, 2] = NAN  # a missing feature inside a valid step
    x[1, 3:] = NAN  # padded steps
    lstm = mnn.MaskedLSTM(3, 4, batch_first=True)
    out, _ = lstm(mnn.MaskFromValue(NAN)(Masked.from_nan(x)))
    assert bool(torch.isfinite(out.data).all())
    assert out.mask[..., 0].tolist() == [[True] * 5, [True, True, True, False, False]]


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="MaskFromValue: expected mask_value as a number"):
        mnn.MaskFromValue("0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MaskFromValue: expected feature_dim as an int"):
        mnn.MaskFromValue(0.0, feature_dim=1.5)  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="MaskFromValue: feature_dim 5 is out of range"):
        mnn.MaskFromValue(0.0, feature_dim=5)(torch.zeros(2, 3, 4))
    assert math.isnan(mnn.MaskFromValue(NAN).mask_value)
