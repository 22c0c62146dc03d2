"""MaskedBatchNorm*/MaskedSyncBatchNorm: ``num_batches_tracked`` and ``momentum=None`` count only the
training batches that hold a valid element; batches of 0 samples follow ``nn.BatchNorm*d``."""

from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from masknn import Masked
from masknn import nn as mnn
from masknn.functional._select import composable_only

KINDS = ["valid", "holes", "masked", "empty"]
LAYERS = {
    "1d": (mnn.MaskedBatchNorm1d, nn.BatchNorm1d, (3, 3, 5)),
    "2d": (mnn.MaskedBatchNorm2d, nn.BatchNorm2d, (3, 3, 4, 4)),
    "3d": (mnn.MaskedBatchNorm3d, nn.BatchNorm3d, (2, 3, 2, 3, 3)),
    "sync": (mnn.MaskedSyncBatchNorm, nn.BatchNorm2d, (3, 3, 4, 4)),
}


def _batch(kind: str, shape: tuple[int, ...], seed: int) -> Masked:
    g = torch.Generator().manual_seed(seed)
    if kind == "empty":
        shape = (0, *shape[1:])
    x = torch.randn(shape, generator=g) * 2 + 1
    m = torch.rand((shape[0], 1, *shape[2:]), generator=g) > 0.3
    if kind == "valid":
        m = torch.ones_like(m)
    if kind == "masked":
        m = torch.zeros_like(m)
    return Masked(torch.where(m, x, torch.tensor(float("nan"))), m)


@settings(max_examples=25, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
    layer=st.sampled_from(sorted(LAYERS)),
    momentum=st.sampled_from([None, 0.3]),
    composable=st.booleans(),
)
def test_batches_without_a_valid_element_change_no_state(
    kinds: list[str], layer: str, momentum: float | None, composable: bool
) -> None:
    # A training batch with no valid element (fully masked, or no sample) changes nothing: not the
    # running statistics, not num_batches_tracked, so momentum=None averages over the batches that
    # hold data. Reference: the same module fed only those batches.
    cls, _, shape = LAYERS[layer]
    torch.manual_seed(0)
    bn, ref = cls(3, momentum=momentum), cls(3, momentum=momentum)
    ref.load_state_dict(bn.state_dict())
    with composable_only() if composable else contextlib.nullcontext():
        for i, kind in enumerate(kinds):
            batch = _batch(kind, shape, i)
            out = bn(batch)
            assert out.data.shape == batch.data.shape and bool(out.data.isfinite().all())
            if kind in ("valid", "holes"):
                ref(batch)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(ref, name), rtol=0, atol=0)
    assert int(bn.num_batches_tracked) == sum(k in ("valid", "holes") for k in kinds)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_momentum_none_is_the_average_over_the_batches_with_data(layer: str) -> None:
    # With all-valid batches interleaved with fully masked ones, the running statistics equal
    # nn.BatchNorm's cumulative average over the all-valid batches alone.
    cls, twin_cls, shape = LAYERS[layer]
    masked, twin = cls(3, momentum=None), twin_cls(3, momentum=None)
    for i, kind in enumerate(["valid", "masked", "valid", "masked", "masked", "valid"]):
        batch = _batch(kind, shape, i)
        masked(batch)
        if kind == "valid":
            twin(batch.data)
    torch.testing.assert_close(masked.running_mean, twin.running_mean)
    torch.testing.assert_close(masked.running_var, twin.running_var)
    assert int(masked.num_batches_tracked) == int(twin.num_batches_tracked) == 3


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("training", [True, False])
def test_a_batch_of_zero_samples_follows_nn(layer: str, training: bool) -> None:
    cls, twin_cls, shape = LAYERS[layer]
    masked, twin = cls(3).train(training), twin_cls(3).train(training)
    x = torch.randn(0, *shape[1:], requires_grad=True)
    out = masked(Masked(x, torch.ones(0, 1, *shape[2:], dtype=torch.bool)))
    ref = twin(x)
    assert out.data.shape == ref.shape == x.shape and out.mask.shape[0] == 0
    out.data.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    torch.testing.assert_close(masked.running_mean, twin.running_mean)
    torch.testing.assert_close(masked.running_var, twin.running_var)
    # nn counts the empty batch; masknn counts only batches with a valid element
    assert int(masked.num_batches_tracked) == 0
