"""Carrier rows: small models that take and return ``Masked`` as users write them.

Unlike the op rows (tensors in, a flat tuple of tensors out), these pass the ``Masked``
named tuple itself through compile, export (save/load included), ONNX and vmap, so the
carrier's pytree handling is part of every check."""

from __future__ import annotations

import torch.nn.functional as tF
from torch import Tensor, nn

from masknn import Masked
from masknn import nn as mnn
from tests.compat.harness import CompatInfo
from tests.compat.inputs import image, masked, sequence
from tests.compat.rows_sequence import NO_FULLGRAPH


def masked_cnn() -> nn.Sequential:
    """Partial convolution, batch statistics, ReLU, max pooling, a second convolution, global
    average pooling and a linear head."""
    return nn.Sequential(
        mnn.PartialConv2d(3, 4, 3, padding=1),
        mnn.MaskedBatchNorm2d(4, track_running_stats=False),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
        mnn.PartialConv2d(4, 4, 3, padding=1),
        mnn.MaskedGlobalAvgPool(),
        mnn.MaskedLinear(4, 2),
    )


def plain_cnn(model: nn.Sequential, x: Masked) -> Tensor:
    """The same network with torch's layers on the data (the twin)."""
    h = x.data
    conv1, bn, act, pool, conv2, _, head = model
    h = nn.Conv2d.forward(conv1, h)
    h = nn.BatchNorm2d.forward(bn, h)
    h = act.module(h)
    h = nn.MaxPool2d.forward(pool, h)
    h = nn.Conv2d.forward(conv2, h)
    return tF.linear(h.mean((2, 3)), head.weight, head.bias)


class MaskedSequenceClassifier(nn.Module):
    """MaskedLSTM, the last valid step, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = mnn.MaskedLSTM(5, 6, batch_first=True)
        self.pool = mnn.MaskedTemporalPool("last")
        self.head = mnn.MaskedLinear(6, 2)

    def forward(self, x: Masked) -> Masked:
        out, _ = self.lstm(x)
        result: Masked = self.head(self.pool(out))
        return result


def plain_sequence(model: MaskedSequenceClassifier, x: Masked) -> Tensor:
    out, _ = nn.LSTM.forward(model.lstm, x.data)
    return tF.linear(out[:, -1], model.head.weight, model.head.bias)


ROWS = [
    CompatInfo(
        "model-cnn",
        (Masked,),
        masked_cnn,
        lambda model, x: model(x),
        masked(image(3, 6, 6)),
        plain_cnn,
        backend="inductor",
        flat_outputs=False,
    ),
    CompatInfo(
        "model-sequence",
        (Masked,),
        MaskedSequenceClassifier,
        lambda model, x: model(x),
        masked(sequence()),
        plain_sequence,
        fullgraph_na=NO_FULLGRAPH,
        flat_outputs=False,
    ),
]
