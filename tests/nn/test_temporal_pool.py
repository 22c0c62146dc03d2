"""MaskedTemporalPool Module."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn import Masked
from masknn.functional import masked_temporal_pool
from masknn.nn import MaskedLSTM, MaskedTemporalPool


def test_last_equals_lstm_final_state() -> None:
    torch.manual_seed(0)
    lstm = MaskedLSTM(3, 4, batch_first=True)
    x = Masked(torch.randn(3, 6, 3), torch.rand(3, 6) > 0.4)
    out, (h, _) = lstm(x)
    pooled = MaskedTemporalPool("last")(out)
    assert torch.equal(pooled.data, torch.where(pooled.mask, h[0], 0))
    assert repr(MaskedTemporalPool("max", time_dim=0)) == "MaskedTemporalPool(mode='max', time_dim=0)"


def test_bad_mode_names_the_layer() -> None:
    with pytest.raises(ValueError, match="MaskedTemporalPool: mode"):
        MaskedTemporalPool("sum")


@settings(max_examples=40, deadline=None)
@given(
    t=st.integers(1, 6),
    f=st.integers(1, 3),
    per_feature=st.booleans(),
    mode=st.sampled_from(["mean", "max", "last"]),
    time_dim=st.sampled_from([1, 0, -2, -3, 2, -1]),
    seed=st.integers(0, 2**16),
)
def test_unbatched_input_is_pooled_over_time(
    t: int, f: int, per_feature: bool, mode: str, time_dim: int, seed: int
) -> None:
    """2-d input is one unbatched sequence (the batched layout without its batch dimension,
    as nn.LSTM takes (T, F)); it was pooled over the features (dim 1) before."""
    gen = torch.Generator().manual_seed(seed)
    channels_last_time = time_dim in (2, -1)  # (N, F, T) batched: (F, T) unbatched
    shape = (f, t) if channels_last_time else (t, f)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    m = torch.rand(shape if per_feature else ((1, t) if channels_last_time else (t, 1)), generator=gen) > 0.4
    xb = torch.where(m, x, torch.nan).requires_grad_(True)
    out = MaskedTemporalPool(mode, time_dim=time_dim)(Masked(xb, m))
    ref = masked_temporal_pool(torch.where(m, x, torch.nan), m, mode, time_dim=1 if channels_last_time else 0)
    assert out.data.shape == (f,) and out.mask.shape == (f,)
    torch.testing.assert_close(out.data, ref.data, rtol=0, atol=0)
    assert torch.equal(out.mask, ref.mask.expand(f))
    (g,) = torch.autograd.grad(out.data.sum(), [xb])
    assert bool(g.isfinite().all()) and bool((g[~m.expand_as(x)] == 0).all())


def test_unbatched_lstm_then_last_step_is_its_final_state() -> None:
    torch.manual_seed(0)
    lstm = MaskedLSTM(3, 4, batch_first=True)
    valid = torch.tensor([True, True, False, True, False])
    out, (h, _) = lstm(Masked(torch.randn(5, 3), valid.unsqueeze(-1)))  # unbatched: (T, H) out
    pooled = MaskedTemporalPool("last")(out)
    assert pooled.data.shape == (4,) and bool(pooled.mask.all())
    assert torch.equal(pooled.data, h[0])


def test_unbatched_input_errors_name_the_layer_and_the_layout() -> None:
    with pytest.raises(
        ValueError,
        match=r"MaskedTemporalPool: time_dim 3 is out of range for one unbatched sequence \(5, 2\) \(T, F\)",
    ):
        MaskedTemporalPool("mean", time_dim=3)(torch.randn(5, 2))
    with pytest.raises(IndexError, match=r"expected a dimension in \[-3, 2\]"):
        MaskedTemporalPool("mean", time_dim=-4)(torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"mask shape \(4, 1\) does not fit data shape \(5, 2\)"):
        MaskedTemporalPool("mean")(Masked(torch.randn(5, 2), torch.ones(4, 1, dtype=torch.bool)))
