"""Loss Modules delegate to the functional losses."""

from __future__ import annotations

import pytest
import torch

from masknn import Masked
from masknn.functional import masked_cross_entropy, masked_mse_loss
from masknn.nn import MaskedCrossEntropyLoss, MaskedMSELoss, MaskedSmoothL1Loss


def test_modules_match_functional() -> None:
    x, t = torch.randn(3, 4), torch.randn(3, 4)
    m = torch.rand(3, 4) > 0.5
    torch.testing.assert_close(MaskedMSELoss("sum")(x, t, m), masked_mse_loss(x, t, m, "sum"))
    torch.testing.assert_close(MaskedMSELoss()(Masked(x, m), t), masked_mse_loss(x, t, m))
    logits, target = torch.randn(3, 5), torch.randint(0, 5, (3,))
    cm = torch.tensor([True, False, True])
    torch.testing.assert_close(
        MaskedCrossEntropyLoss(label_smoothing=0.1)(logits, target, cm),
        masked_cross_entropy(logits, target, cm, label_smoothing=0.1),
    )
    assert "reduction='none'" in repr(MaskedSmoothL1Loss("none"))


def test_bad_reduction() -> None:
    with pytest.raises(ValueError, match="MaskedMSELoss: reduction must be"):
        MaskedMSELoss("avg")
