"""MaskedTemporalPool Module."""

from __future__ import annotations

import pytest
import torch

from masknn import Masked
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
