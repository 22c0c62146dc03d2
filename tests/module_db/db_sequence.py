"""Contract rows for the sequence Modules: recurrent layers, time-distributed Linear, attention, pooling."""

from __future__ import annotations

import torch

from masknn import Masked
from masknn import nn as mnn
from tests.module_db import ModuleInfo


def _holes(n: int = 3, t: int = 7, f: int = 5) -> Masked:
    mask = torch.rand(n, t) > 0.4
    mask[1, :] = False
    mask[1, 2] = True  # a single valid step in the middle
    mask[2, :] = True
    return Masked(torch.randn(n, t, f), mask)


def _seq() -> tuple[Masked]:
    return (_holes(),)


def _seq_time_first() -> tuple[Masked]:
    x = _holes()
    return (Masked(x.data.transpose(0, 1).contiguous(), x.mask.transpose(0, 1)),)


def _seq_hx() -> tuple[Masked, tuple[torch.Tensor, torch.Tensor]]:
    return _holes(), (torch.randn(1, 3, 4), torch.randn(1, 3, 4))


def _rows() -> tuple[Masked]:
    return (Masked(torch.randn(3, 4, 6, 5), torch.rand(3, 4, 6, 1) > 0.5),)


def _pair() -> tuple[Masked, Masked]:
    q = _holes(3, 6, 8)
    k = Masked(torch.randn(3, 9, 8), torch.rand(3, 9) > 0.5)
    k.mask[2] = False  # a sample whose keys are all masked
    return q, k


def _lstm_hx_call(module: torch.nn.Module, x: Masked, hx: tuple[torch.Tensor, torch.Tensor]) -> object:
    return module(x, hx)


def _mha_cross_call(module: torch.nn.Module, q: Masked, k: Masked) -> object:
    return module(q, k, k)


def _pool_time_first_call(module: torch.nn.Module, x: Masked) -> Masked:
    # Output (N, F): add a leading axis so its batch sits at dim 1 like the time-first input.
    out = module(x)
    return Masked(out.data.unsqueeze(0), out.mask.unsqueeze(0))


def _mha_causal_call(module: torch.nn.Module, q: Masked) -> object:
    return module(q, is_causal=True)


def _holes_both_ends_time_first() -> tuple[Masked]:
    mask = torch.rand(3, 7) > 0.3
    mask[:, 0] = False
    mask[:, -1] = False
    mask[1, :] = False  # a fully masked sequence
    x = Masked(torch.randn(3, 7, 5), mask)
    return (Masked(x.data.transpose(0, 1).contiguous(), x.mask.transpose(0, 1)),)


def _gru_hx_time_first() -> tuple[Masked, torch.Tensor]:
    return _holes_both_ends_time_first()[0], torch.randn(4, 3, 4)


def _gru_hx_call(module: torch.nn.Module, x: Masked, hx: torch.Tensor) -> object:
    return module(x, hx)


def _no_valid_row() -> tuple[Masked]:
    return (Masked(torch.randn(3, 7, 5), torch.zeros(3, 7, dtype=torch.bool)),)


def _keras_classifier() -> torch.nn.Module:
    """Keras' first model as written: Masking(0.0) -> LSTM -> Dense, in nn.Sequential."""
    return torch.nn.Sequential(
        mnn.MaskFromValue(0.0),
        mnn.MaskedLSTM(5, 4, batch_first=True, return_state=False),
        mnn.MaskedTemporalPool("last"),
        mnn.MaskedLinear(4, 3),
    )


def _keras_seq2seq() -> torch.nn.Module:
    """Masking -> bidirectional GRU (return_sequences) -> TimeDistributed(Dense)."""
    return torch.nn.Sequential(
        mnn.MaskFromValue(0.0),
        mnn.MaskedGRU(5, 4, batch_first=True, bidirectional=True, return_state=False),
        mnn.TimeDistributedLinear(8, 3),
    )


TIME_FIRST = {"batch_dim": 1}

ENTRIES = [
    ModuleInfo(mnn.MaskedLSTM, lambda: mnn.MaskedLSTM(5, 4, batch_first=True), _seq),
    ModuleInfo(
        mnn.MaskedLSTM,
        lambda: mnn.MaskedLSTM(5, 4, num_layers=2, batch_first=True, bidirectional=True, dropout=0.3),
        _seq,
        id="MaskedLSTM-2layer-bidir-dropout",
    ),
    ModuleInfo(
        mnn.MaskedLSTM,
        lambda: mnn.MaskedLSTM(5, 6, proj_size=3, num_layers=2, bidirectional=True),
        _seq_time_first,
        id="MaskedLSTM-proj-time-first",
        options=TIME_FIRST,
    ),
    ModuleInfo(
        mnn.MaskedLSTM,
        lambda: mnn.MaskedLSTM(5, 4, batch_first=True),
        _seq_hx,
        id="MaskedLSTM-hx",
        call=_lstm_hx_call,
    ),
    ModuleInfo(mnn.MaskedGRU, lambda: mnn.MaskedGRU(5, 4, batch_first=True, bidirectional=True), _seq),
    ModuleInfo(
        mnn.MaskedGRU,
        lambda: mnn.MaskedGRU(5, 4, num_layers=2, dropout=0.5),
        _seq_time_first,
        id="MaskedGRU-2layer-time-first",
        options=TIME_FIRST,
    ),
    ModuleInfo(mnn.MaskedRNN, lambda: mnn.MaskedRNN(5, 4, batch_first=True), _seq),
    ModuleInfo(
        mnn.MaskedRNN,
        lambda: mnn.MaskedRNN(5, 4, nonlinearity="relu", num_layers=2, batch_first=True, bidirectional=True),
        _seq,
        id="MaskedRNN-relu-2layer-bidir",
    ),
    ModuleInfo(mnn.TimeDistributedLinear, lambda: mnn.TimeDistributedLinear(5, 3), _seq),
    ModuleInfo(
        mnn.TimeDistributedLinear,
        lambda: mnn.TimeDistributedLinear(5, 3),
        _rows,
        id="TimeDistributedLinear-4d",
    ),
    ModuleInfo(
        mnn.MaskedMultiheadAttention,
        lambda: mnn.MaskedMultiheadAttention(5, 1, batch_first=True, dropout=0.2),
        _seq,
    ),
    ModuleInfo(
        mnn.MaskedMultiheadAttention,
        lambda: mnn.MaskedMultiheadAttention(8, 2, batch_first=True),
        _pair,
        id="MaskedMultiheadAttention-cross",
        call=_mha_cross_call,
    ),
    ModuleInfo(
        mnn.MaskedMultiheadAttention,
        lambda: mnn.MaskedMultiheadAttention(5, 1, batch_first=True),
        _seq,
        id="MaskedMultiheadAttention-causal",
        call=_mha_causal_call,
    ),
    ModuleInfo(
        mnn.MaskedMultiheadAttention,
        lambda: mnn.MaskedMultiheadAttention(5, 5),
        _seq_time_first,
        id="MaskedMultiheadAttention-time-first",
        options=TIME_FIRST,
    ),
    ModuleInfo(
        mnn.MaskedTemporalPool, lambda: mnn.MaskedTemporalPool("mean"), _seq, id="MaskedTemporalPool-mean"
    ),
    ModuleInfo(
        mnn.MaskedTemporalPool, lambda: mnn.MaskedTemporalPool("max"), _seq, id="MaskedTemporalPool-max"
    ),
    ModuleInfo(
        mnn.MaskedTemporalPool, lambda: mnn.MaskedTemporalPool("last"), _seq, id="MaskedTemporalPool-last"
    ),
    ModuleInfo(
        mnn.MaskedTemporalPool,
        lambda: mnn.MaskedTemporalPool("last", time_dim=0),
        _seq_time_first,
        id="MaskedTemporalPool-last-time-first",
        call=_pool_time_first_call,
        options=TIME_FIRST,
    ),
    # Review: holes at both ends with a fully masked sequence, time first, with and
    # without an initial state (a fully masked sample then keeps h_0: not zero); no valid row.
    ModuleInfo(
        mnn.MaskedGRU,
        lambda: mnn.MaskedGRU(5, 4, num_layers=2, bidirectional=True),
        _holes_both_ends_time_first,
        id="MaskedGRU-bidir-holes-both-ends-time-first",
        options=TIME_FIRST,
    ),
    ModuleInfo(
        mnn.MaskedGRU,
        lambda: mnn.MaskedGRU(5, 4, num_layers=2, bidirectional=True),
        _gru_hx_time_first,
        id="MaskedGRU-bidir-hx-time-first",
        call=_gru_hx_call,
        options={"batch_dim": 1, "fully_masked_zero": False},
    ),
    ModuleInfo(
        mnn.TimeDistributedLinear,
        lambda: mnn.TimeDistributedLinear(5, 3),
        _no_valid_row,
        id="TDL-no-valid-row",
    ),
    # return_state=False (the output only) and the Keras-style whole models it enables.
    ModuleInfo(
        mnn.MaskedLSTM,
        lambda: mnn.MaskedLSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True, return_state=False),
        _seq,
        id="MaskedLSTM-output-only",
    ),
    ModuleInfo(
        mnn.MaskedRNN,
        lambda: mnn.MaskedRNN(5, 4, nonlinearity="relu", batch_first=True, return_state=False),
        _seq,
        id="MaskedRNN-relu-output-only",
    ),
    ModuleInfo(mnn.MaskedLSTM, _keras_classifier, _seq, id="Keras-Masking-LSTM-Dense"),
    ModuleInfo(mnn.MaskedGRU, _keras_seq2seq, _seq, id="Keras-Masking-GRU-TimeDistributed"),
]


# ---------------------------------------------------------------------------------------
# Keras-style sequence models: MaskedEmbedding and the transformer encoder (issue 9, item 3).
# A block of its own, apart from the recurrent rows above.
#
# MaskedEmbedding takes integer ids. The checker writes floats (NaN, Inf, 1e30) at masked
# positions and passes integer data as it is, so for these rows it cannot vary the masked
# ids: it checks the canonical zeros, the mask, a fully masked sample, finite weight
# gradients and that NaN/Inf cotangents at masked outputs reach no row of the weight. The
# integer analogue of the perturbations (random, 0, -1, out-of-range and extreme ids at
# masked positions leave valid outputs, the mask and the weight gradient bitwise equal) is
# tests/functional/test_embedding.py and tests/nn/test_embedding.py.


def _ids_with_padding() -> tuple[Masked]:
    ids = torch.randint(1, 9, (3, 7))
    ids[0, 4:] = 0
    ids[1, :] = 0  # a sequence of padding only
    ids[2, 2] = 0  # padding in the middle
    return (Masked(ids, torch.ones(3, 7, dtype=torch.bool)),)


def _ids_with_holes() -> tuple[Masked]:
    ids = torch.randint(0, 9, (3, 7))
    mask = torch.rand(3, 7) > 0.3
    mask[1] = False
    return (Masked(ids, mask),)


def _encoder_input() -> tuple[Masked]:
    return (_holes(3, 7, 8),)


def _encoder_right_padded() -> tuple[Masked]:
    return (Masked.from_lengths(torch.randn(4, 7, 8), [7, 3, 1, 5]),)


def _encoder_time_first() -> tuple[Masked]:
    x = _holes(3, 7, 8)
    return (Masked(x.data.transpose(0, 1).contiguous(), x.mask.transpose(0, 1)),)


def _causal_call(module: torch.nn.Module, x: Masked) -> object:
    return module(x, is_causal=True)


def _per_head_float_mask_call(module: torch.nn.Module, x: Masked) -> object:
    gen = torch.Generator().manual_seed(5)
    n, t = x.data.shape[0], x.data.shape[1]
    am = torch.randn(n * 2, t, t, generator=gen).masked_fill(
        torch.rand(n * 2, t, t, generator=gen) > 0.7, -torch.inf
    )
    return module(x, am.to(x.data.device))


def _no_grad_call(module: torch.nn.Module, x: Masked) -> object:
    with torch.no_grad():
        return module(x)


def _encoder_layer(**kw: object) -> mnn.MaskedTransformerEncoderLayer:
    return mnn.MaskedTransformerEncoderLayer(8, 2, dim_feedforward=16, **kw)  # type: ignore[arg-type]


ENTRIES += [
    ModuleInfo(
        mnn.MaskedEmbedding,
        lambda: mnn.MaskedEmbedding(9, 4, padding_idx=0),
        _ids_with_padding,
        id="MaskedEmbedding-padding_idx",
    ),
    ModuleInfo(
        mnn.MaskedEmbedding,
        lambda: mnn.MaskedEmbedding(9, 4, mask_zero=True, max_norm=1.0),
        _ids_with_holes,
        id="MaskedEmbedding-mask_zero-holes-max_norm",
    ),
    ModuleInfo(
        mnn.MaskedEmbedding,
        lambda: mnn.MaskedEmbedding(9, 4, padding_idx=3, scale_grad_by_freq=True),
        _ids_with_holes,
        id="MaskedEmbedding-external-mask-scale_grad_by_freq",
    ),
    ModuleInfo(
        mnn.MaskedTransformerEncoderLayer,
        lambda: _encoder_layer(dropout=0.2, batch_first=True),
        _encoder_input,
    ),
    ModuleInfo(
        mnn.MaskedTransformerEncoderLayer,
        lambda: _encoder_layer(dropout=0.1, activation="gelu", norm_first=True, bias=False),
        _encoder_time_first,
        id="MaskedTransformerEncoderLayer-norm_first-gelu-nobias-time-first",
        options=TIME_FIRST,
    ),
    ModuleInfo(
        mnn.MaskedTransformerEncoderLayer,
        lambda: _encoder_layer(dropout=0.1, batch_first=True, activation=torch.tanh),
        _encoder_input,
        id="MaskedTransformerEncoderLayer-causal",
        call=_causal_call,
    ),
    ModuleInfo(
        mnn.MaskedTransformerEncoderLayer,
        lambda: _encoder_layer(dropout=0.0, batch_first=True),
        _encoder_input,
        id="MaskedTransformerEncoderLayer-per-head-float-src_mask",
        call=_per_head_float_mask_call,
    ),
    ModuleInfo(
        mnn.MaskedTransformerEncoder,
        lambda: mnn.MaskedTransformerEncoder(
            _encoder_layer(dropout=0.1, batch_first=True), 2, norm=torch.nn.LayerNorm(8)
        ),
        _encoder_input,
    ),
    ModuleInfo(
        mnn.MaskedTransformerEncoder,
        lambda: mnn.MaskedTransformerEncoder(_encoder_layer(dropout=0.1, batch_first=True), 2),
        _encoder_right_padded,
        id="MaskedTransformerEncoder-no-grad-nested-inference",
        call=_no_grad_call,
        options={"check_grad": False},
    ),
]
