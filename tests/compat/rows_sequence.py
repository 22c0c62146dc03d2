"""Rows for the sequence ops: recurrent layers, time-distributed Linear, attention, temporal
pooling. Masks have holes in the middle of the sequences (not only right padding)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as tF
from torch import Tensor, nn

import masknn.functional as F
from masknn import Masked
from masknn import nn as mnn
from tests.compat.calls import on_data, parent, unary
from tests.compat.harness import NA, Builder, CompatInfo
from tests.compat.inputs import pair, sequence, step_mask

INDUCTOR = "inductor"

#: F.scaled_dot_product_attention picks the CPU flash kernel, whose backward has no derivative.
GRADGRAD_FLASH = NA(
    "F.scaled_dot_product_attention runs the CPU flash kernel, whose backward is not differentiable",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
)


def _flat_weights(layer: nn.RNNBase) -> list[Tensor]:
    return [getattr(layer, name) for name in layer._flat_weights_names]


def _with_state(f: int = 5, t: int = 6, hidden: int = 4) -> Builder:
    """``(x, mask, h_0, c_0)`` time first: ``(T, N, f)``, ``(T, N)``, states ``(1, N, hidden)``."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        x, m = sequence(f, t, time_first=True)(n, grow, g, hole)
        return x, m, torch.randn(1, n, hidden, generator=g), torch.randn(1, n, hidden, generator=g)

    return make


def _lstm_state(layer: nn.Module, x: Tensor, m: Tensor, h0: Tensor, c0: Tensor) -> Any:
    return layer(Masked(x, m), (h0, c0))


def _attention_inputs() -> Builder:
    """``(q, q_mask, k, k_mask)``: queries ``(N, 6, 8)`` and keys ``(N, 7, 8)`` with holes."""
    return pair(sequence(8, 6), sequence(8, 7))


def _heads(f: int = 4, t: int = 6) -> Builder:
    """``(q, k, v, q_mask, k_mask)`` with heads: ``(N, 2, T, f)``, masks ``(N, 1, T)``."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        steps = t + grow
        q, k, v = (torch.randn(n, 2, steps, f, generator=g) for _ in range(3))
        qm, km = step_mask(n, steps, g).unsqueeze(1), step_mask(n, steps, g).unsqueeze(1)
        if hole is not None:
            q = torch.where(qm.unsqueeze(-1), q, torch.tensor(hole))
            k = torch.where(km.unsqueeze(-1), k, torch.tensor(hole))
            v = torch.where(km.unsqueeze(-1), v, torch.tensor(hole))
        return q, k, v, qm, km

    return make


def _last(x: Tensor) -> Tensor:
    return x[:, -1]


#: By default dynamo does not trace nn.RNN/GRU/LSTM modules (a graph break, then eager); with
#: allow_rnn it traces nn.LSTM in one graph, so the recurrent rows must trace too.
ALLOW_RNN = {"allow_rnn": True}

#: With the default configuration, fullgraph=True refuses nn.LSTM/GRU/RNN.
NO_FULLGRAPH = NA(
    "with torch._dynamo.config.allow_rnn=False (the default) torch.compile(fullgraph=True) refuses "
    "nn.LSTM: compiled with graph breaks allowed (the recurrent rows set allow_rnn=True and fullgraph)",
    "Attempted to wrap RNN, GRU, or LSTM",
)

ROWS = [
    CompatInfo(
        "MaskedLSTM",
        (mnn.MaskedLSTM,),
        lambda: mnn.MaskedLSTM(5, 4, batch_first=True),
        unary,
        sequence(),
        parent(nn.LSTM),
        backend=INDUCTOR,
        dynamo_config=ALLOW_RNN,
    ),
    CompatInfo(
        "MaskedLSTM-2layer-bidir-time-first",
        (mnn.MaskedLSTM,),
        lambda: mnn.MaskedLSTM(5, 3, num_layers=2, bidirectional=True),
        unary,
        sequence(time_first=True),
        parent(nn.LSTM),
        batch_dims=(1, 1),
        dynamo_config=ALLOW_RNN,
    ),
    CompatInfo(
        "MaskedLSTM-state",
        (mnn.MaskedLSTM,),
        lambda: mnn.MaskedLSTM(5, 4),
        _lstm_state,
        _with_state(),
        lambda layer, x, m, h0, c0: nn.LSTM.forward(layer, x, (h0, c0)),
        batch_dims=(1, 1, 1, 1),
        dynamo_config=ALLOW_RNN,
    ),
    CompatInfo(
        "MaskedGRU",
        (mnn.MaskedGRU,),
        lambda: mnn.MaskedGRU(5, 4, batch_first=True, bidirectional=True),
        unary,
        sequence(),
        parent(nn.GRU),
        dynamo_config=ALLOW_RNN,
    ),
    CompatInfo(
        "MaskedRNN",
        (mnn.MaskedRNN,),
        lambda: mnn.MaskedRNN(5, 4, nonlinearity="relu", batch_first=True),
        unary,
        sequence(),
        parent(nn.RNN),
        dynamo_config=ALLOW_RNN,
    ),
    CompatInfo(
        "masked_lstm",
        (F.masked_lstm,),
        lambda: nn.LSTM(5, 4, batch_first=True),
        lambda layer, x, m: F.masked_lstm(x, m, _flat_weights(layer), hidden_size=4),
        sequence(),
        parent(nn.LSTM),
        dynamo_config=ALLOW_RNN,
    ),
    CompatInfo(
        "masked_gru",
        (F.masked_gru,),
        lambda: nn.GRU(5, 4, batch_first=True),
        lambda layer, x, m: F.masked_gru(x, m, _flat_weights(layer), hidden_size=4),
        sequence(),
        parent(nn.GRU),
        dynamo_config=ALLOW_RNN,
    ),
    CompatInfo(
        "masked_rnn",
        (F.masked_rnn,),
        lambda: nn.RNN(5, 4, batch_first=True),
        lambda layer, x, m: F.masked_rnn(x, m, _flat_weights(layer), hidden_size=4),
        sequence(),
        parent(nn.RNN),
        dynamo_config=ALLOW_RNN,
    ),
    CompatInfo(
        "TimeDistributedLinear",
        (mnn.TimeDistributedLinear,),
        lambda: mnn.TimeDistributedLinear(5, 3),
        unary,
        sequence(mask_3d=True),
        parent(nn.Linear),
    ),
    CompatInfo(
        "time_distributed_linear",
        (F.time_distributed_linear,),
        lambda: nn.Linear(5, 3),
        lambda layer, x, m: F.time_distributed_linear(x, m, layer.weight, layer.bias),
        sequence(),
        parent(nn.Linear),
    ),
    CompatInfo(
        "MaskedMultiheadAttention",
        (mnn.MaskedMultiheadAttention,),
        lambda: mnn.MaskedMultiheadAttention(8, 2, batch_first=True),
        unary,
        sequence(8),
        lambda layer, x, m: nn.MultiheadAttention.forward(layer, x, x, x),
        backend=INDUCTOR,
    ),
    CompatInfo(
        "MaskedMultiheadAttention-cross",
        (mnn.MaskedMultiheadAttention,),
        lambda: mnn.MaskedMultiheadAttention(8, 2, batch_first=True),
        lambda layer, q, qm, k, km: layer(Masked(q, qm), Masked(k, km), need_weights=False),
        _attention_inputs(),
        lambda layer, q, qm, k, km: nn.MultiheadAttention.forward(layer, q, k, k, need_weights=False),
        na={"gradgrad": GRADGRAD_FLASH},
    ),
    CompatInfo(
        "masked_scaled_dot_product_attention",
        (F.masked_scaled_dot_product_attention,),
        nn.Module,
        lambda layer, q, k, v, qm, km: F.masked_scaled_dot_product_attention(q, k, v, qm, km),
        _heads(),
        lambda layer, q, k, v, qm, km: tF.scaled_dot_product_attention(q, k, v),
        na={"gradgrad": GRADGRAD_FLASH},
    ),
    CompatInfo(
        "MaskedTemporalPool-mean",
        (mnn.MaskedTemporalPool,),
        lambda: mnn.MaskedTemporalPool("mean"),
        unary,
        sequence(),
        on_data(lambda x: x.mean(1)),
    ),
    CompatInfo(
        "MaskedTemporalPool-max",
        (mnn.MaskedTemporalPool,),
        lambda: mnn.MaskedTemporalPool("max"),
        unary,
        sequence(),
        on_data(lambda x: x.amax(1)),
    ),
    CompatInfo(
        "MaskedTemporalPool-last",
        (mnn.MaskedTemporalPool,),
        lambda: mnn.MaskedTemporalPool("last"),
        unary,
        sequence(),
        on_data(_last),
    ),
    CompatInfo(
        "masked_temporal_pool",
        (F.masked_temporal_pool,),
        nn.Module,
        lambda layer, x, m: F.masked_temporal_pool(x, m, "last", time_dim=0),
        sequence(time_first=True),
        on_data(lambda x: x[-1]),
        batch_dims=(1, 1),
    ),
]
