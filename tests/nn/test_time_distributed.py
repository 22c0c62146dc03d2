"""TimeDistributedLinear Module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masknn import Masked
from masknn.nn import TimeDistributedLinear


def test_state_dict_and_equality_with_linear() -> None:
    torch.manual_seed(0)
    plain = nn.Linear(4, 3)
    layer = TimeDistributedLinear(4, 3, dtype=torch.float64)
    layer.load_state_dict(plain.state_dict())
    assert repr(layer) == "TimeDistributedLinear(in_features=4, out_features=3, bias=True)"
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    m = Masked.from_lengths(x, [6, 2])
    out = layer(m)
    ref = nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(out.data[0], ref[0])
    torch.testing.assert_close(out.data[1, :2], ref[1, :2])
    assert bool((out.data[1, 2:] == 0).all()) and torch.equal(out.mask, m.mask)
    # A plain tensor is all valid.
    torch.testing.assert_close(layer(x).data, ref)


def test_per_feature_mask_error_names_layer() -> None:
    layer = TimeDistributedLinear(4, 3)
    with pytest.raises(ValueError, match=r"TimeDistributedLinear: .*per-feature.*MaskedLinear"):
        layer(Masked(torch.randn(2, 6, 4), torch.rand(2, 6, 4) > 0.5))
