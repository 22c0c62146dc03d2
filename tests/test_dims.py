"""Every dimension argument: out of range it raises (never wraps around), in range it is torch's.

torch raises ``IndexError: Dimension out of range``; masknn raises an ``OutOfRangeError``, a
``ValueError`` (the project's rule: bad input raises ValueError/TypeError naming the layer)
that is also an ``IndexError``, with the layer's name and the range in the message.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from masknn import Masked
from masknn import functional as MF
from masknn import nn as mnn

Op = Callable[[torch.Tensor, int], torch.Tensor]


def _valid(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape, dtype=torch.bool)


# name in the error, masknn (data, dim) -> data, torch twin (data, dim) -> data
CASES: dict[str, tuple[str, Op, Op]] = {
    "MaskedCat": (
        "MaskedCat",
        lambda x, d: mnn.MaskedCat(d)(x, Masked(x * 2)).data,
        lambda x, d: torch.cat([x, x * 2], d),
    ),
    "masked_cat": (
        "masked_cat",
        lambda x, d: MF.masked_cat([x, x], [_valid(x), _valid(x)], d).data,
        lambda x, d: torch.cat([x, x], d),
    ),
    "MaskedFlatten-start": (
        "MaskedFlatten",
        lambda x, d: mnn.MaskedFlatten(d, -1)(x).data,
        lambda x, d: torch.flatten(x, d, -1),
    ),
    "MaskedFlatten-end": (
        "MaskedFlatten",
        lambda x, d: mnn.MaskedFlatten(0, d)(x).data,
        lambda x, d: torch.flatten(x, 0, d),
    ),
    "masked_flatten": (
        "masked_flatten",
        lambda x, d: MF.masked_flatten(x, _valid(x), d, -1).data,
        lambda x, d: torch.flatten(x, d, -1),
    ),
    "MaskChannel": (
        "MaskChannel",
        lambda x, d: mnn.MaskChannel(d)(Masked(x, torch.ones((1,) * x.dim(), dtype=torch.bool))).data,
        lambda x, d: torch.cat(
            [x, torch.ones([1 if i == d % x.dim() else s for i, s in enumerate(x.shape)])], d
        ),
    ),
    "mask_channel": (
        "mask_channel",
        lambda x, d: MF.mask_channel(x, torch.ones((1,) * x.dim(), dtype=torch.bool), d).data,
        lambda x, d: torch.cat(
            [x, torch.ones([1 if i == d % x.dim() else s for i, s in enumerate(x.shape)])], d
        ),
    ),
    "LearnedFill": (
        "LearnedFill",
        lambda x, d: mnn.LearnedFill(x.shape[d] if -x.dim() <= d < x.dim() else 1, channel_dim=d)(x).data,
        lambda x, d: x,
    ),
    "MaskFromValue": (
        "MaskFromValue",
        lambda x, d: mnn.MaskFromValue(0.0, feature_dim=d)(x).mask.float(),
        lambda x, d: (x != 0).any(d, keepdim=True).float(),
    ),
    "MaskedTemporalPool": (
        "MaskedTemporalPool",
        lambda x, d: mnn.MaskedTemporalPool("mean", time_dim=d)(x).data,
        lambda x, d: x.mean(d),
    ),
    "masked_temporal_pool": (
        "masked_temporal_pool",
        lambda x, d: MF.masked_temporal_pool(x, _valid(x), "max", d).data,
        lambda x, d: x.amax(d),
    ),
    "masked_sum": ("masked_sum", lambda x, d: MF.masked_sum(x, _valid(x), d).data, lambda x, d: x.sum(d)),
    "masked_mean": ("masked_mean", lambda x, d: MF.masked_mean(x, _valid(x), d).data, lambda x, d: x.mean(d)),
    "masked_var": ("masked_var", lambda x, d: MF.masked_var(x, _valid(x), d).data, lambda x, d: x.var(d)),
    "masked_std": ("masked_var", lambda x, d: MF.masked_std(x, _valid(x), d).data, lambda x, d: x.std(d)),
    "masked_max": ("masked_max", lambda x, d: MF.masked_max(x, _valid(x), d).data, lambda x, d: x.amax(d)),
    "masked_min": ("masked_min", lambda x, d: MF.masked_min(x, _valid(x), d).data, lambda x, d: x.amin(d)),
    "masked_logsumexp": (
        "masked_logsumexp",
        lambda x, d: MF.masked_logsumexp(x, _valid(x), d).data,
        lambda x, d: x.logsumexp(d),
    ),
    "masked_softmax": (
        "masked_softmax",
        lambda x, d: MF.masked_softmax(x, _valid(x), d).data,
        lambda x, d: x.softmax(d),
    ),
    "masked_log_softmax": (
        "masked_log_softmax",
        lambda x, d: MF.masked_log_softmax(x, _valid(x), d).data,
        lambda x, d: x.log_softmax(d),
    ),
    "fill-mean": (
        "fill",
        lambda x, d: MF.fill(x, _valid(x), "mean", dims=(d,)),
        lambda x, d: x,
    ),
}


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(sorted(CASES)), rank=st.integers(2, 4), dim=st.integers(-7, 7))
def test_dims_raise_out_of_range_and_follow_torch_in_range(case: str, rank: int, dim: int) -> None:
    # MaskedTemporalPool takes 2-d data as one unbatched sequence (T, F), its time_dim a dimension
    # of the batched layout (tests/nn/test_temporal_pool.py), not as torch.mean takes dim.
    assume(not (case == "MaskedTemporalPool" and rank == 2))
    name, masked, twin = CASES[case]
    x = torch.randn((2, 3, 4, 5)[:rank]) + 3.0  # no zeros: MaskFromValue(0.0) masks nothing
    if -rank <= dim < rank:
        torch.testing.assert_close(masked(x, dim), twin(x, dim))
        return
    with pytest.raises((ValueError, IndexError)) as err:  # both: masknn.OutOfRangeError
        masked(x, dim)
    assert isinstance(err.value, ValueError) and isinstance(err.value, IndexError), repr(err.value)
    message = str(err.value)
    assert message.startswith(f"{name}: ") and f"{dim} is out of range" in message, message
    assert f"[{-rank}, {rank - 1}]" in message, message


def test_class_dim_of_the_cross_entropy() -> None:
    logits, target = torch.randn(2, 5, 3), torch.zeros(2, 5, dtype=torch.long)
    for call, name in (
        (lambda d: MF.masked_cross_entropy(logits, target, None, class_dim=d), "masked_cross_entropy"),
        (lambda d: mnn.MaskedCrossEntropyLoss(class_dim=d)(logits, target), "MaskedCrossEntropyLoss"),
    ):
        with pytest.raises(IndexError, match=f"{name}: class_dim 3 is out of range"):
            call(3)
        with pytest.raises(ValueError, match=f"{name}: class_dim -4 is out of range"):
            call(-4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: mnn.MaskedCat(1.5),
        lambda: mnn.MaskedFlatten("1"),
        lambda: mnn.MaskChannel(None),
        lambda: mnn.LearnedFill(3, channel_dim=1.0),
        lambda: mnn.MaskFromValue(0.0, feature_dim=[1]),
        lambda: mnn.MaskedTemporalPool("mean", time_dim=True),
    ],
)
def test_a_dim_that_is_not_an_int_is_refused_at_construction(make: Callable[[], object]) -> None:
    with pytest.raises(TypeError, match=r"^\w+: expected \w+ as an int"):
        make()
