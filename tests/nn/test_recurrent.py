"""MaskedLSTM / MaskedGRU / MaskedRNN Modules: twins' state_dicts, call convention, dropout, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from masknn import Masked
from masknn.nn import MaskedGRU, MaskedLSTM, MaskedRNN
from tests.functional.test_recurrent import naive_rnn


@pytest.mark.parametrize(
    "plain_cls,masked_cls,kw",
    [
        (nn.LSTM, MaskedLSTM, dict(num_layers=2, bidirectional=True, proj_size=2)),
        (nn.GRU, MaskedGRU, dict(num_layers=2, bidirectional=True)),
        (nn.RNN, MaskedRNN, dict(nonlinearity="relu")),
    ],
)
def test_state_dict_round_trip(plain_cls: type[nn.RNNBase], masked_cls: type[nn.RNNBase], kw: dict) -> None:
    torch.manual_seed(0)
    plain = plain_cls(3, 4, batch_first=True, **kw)
    masked = masked_cls(3, 4, batch_first=True, **kw)
    masked.load_state_dict(plain.state_dict())
    back = plain_cls(3, 4, batch_first=True, **kw)
    back.load_state_dict(masked.state_dict())
    for (k1, v1), (k2, v2) in zip(plain.state_dict().items(), back.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert repr(masked).replace(masked_cls.__name__, plain_cls.__name__) == repr(plain)
    x = torch.randn(2, 5, 3)
    out, _ = masked(Masked(x, torch.ones(2, 5, dtype=torch.bool)))
    ref, _ = plain(x)
    torch.testing.assert_close(out.data, ref, rtol=1e-5, atol=1e-6)


def test_lstm_module_matches_naive_loop_with_holes_and_hx() -> None:
    torch.manual_seed(0)
    lstm = MaskedLSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)
    hx = (torch.randn(4, 3, 4, dtype=torch.float64), torch.randn(4, 3, 4, dtype=torch.float64))
    out, (h, c) = lstm(Masked(x, mask), hx)
    ref, ref_h, ref_c = naive_rnn("LSTM", lstm, x, mask, hx)
    torch.testing.assert_close(out.data, torch.where(mask.unsqueeze(-1), ref, 0))
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(c, ref_c)
    assert out.mask.shape == (3, 6, 1)


def test_dropout_between_layers_only_in_training() -> None:
    torch.manual_seed(0)
    gru = MaskedGRU(3, 4, num_layers=2, dropout=1.0, batch_first=True)
    top = MaskedGRU(4, 4, batch_first=True)
    top.load_state_dict({k[:-1] + "0": v for k, v in gru.state_dict().items() if k.endswith("l1")})
    bottom = MaskedGRU(3, 4, batch_first=True)
    bottom.load_state_dict({k: v for k, v in gru.state_dict().items() if k.endswith("l0")})
    x = Masked(torch.randn(2, 5, 3), torch.tensor([[1, 0, 1, 1, 0], [1, 1, 0, 0, 0]]))
    # p = 1 drops every input of layer 2 in training: it sees zeros at its valid steps.
    out, h = gru(x)
    ref, ref_h = top(Masked(torch.zeros(2, 5, 4), x.mask))
    torch.testing.assert_close(out.data, ref.data)
    torch.testing.assert_close(h[1], ref_h[0])
    # In eval mode there is no dropout: the stack is the composition of the layers.
    gru.eval()
    out, h = gru(x)
    mid, h0 = bottom(x)
    ref, ref_h = top(mid)
    torch.testing.assert_close(out.data, ref.data)
    torch.testing.assert_close(h, torch.cat([h0, ref_h]))


def test_gradients_match_packed_lstm_for_right_padding() -> None:
    torch.manual_seed(0)
    lstm = MaskedLSTM(3, 5, num_layers=2, batch_first=True)
    plain = nn.LSTM(3, 5, num_layers=2, batch_first=True)
    plain.load_state_dict(lstm.state_dict())
    x = torch.randn(3, 7, 3)
    lengths = torch.tensor([7, 3, 5])
    out, (h, c) = lstm(Masked.from_lengths(x, lengths))
    (h.sum() + c.sum() + out.data.pow(2).sum()).backward()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_out, (rh, rc) = plain(packed)
    (rh.sum() + rc.sum() + ref_out.data.pow(2).sum()).backward()
    for (name, p), q in zip(lstm.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_plain_tensor_input_is_all_valid() -> None:
    torch.manual_seed(0)
    rnn = MaskedRNN(3, 4)
    x = torch.randn(5, 2, 3)
    out, h = rnn(x)
    ref, ref_h = nn.RNN.forward(rnn, x)
    torch.testing.assert_close(out.data, ref)
    torch.testing.assert_close(h, ref_h)


def test_module_errors_name_the_layer() -> None:
    lstm = MaskedLSTM(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    # A mask whose T does not match cannot even be built into a Masked.
    with pytest.raises(ValueError, match=r"mask shape \(2, 4\) does not fit data shape \(2, 5, 3\)"):
        lstm(Masked(x, torch.ones(2, 4)))
    with pytest.raises(ValueError, match=r"MaskedLSTM: .*per-feature mask \(2, 5, 3\)"):
        lstm(Masked(x, torch.rand(2, 5, 3) > 0.5))
    with pytest.raises(TypeError, match="MaskedLSTM: got a PackedSequence"):
        lstm(pack_padded_sequence(x, torch.tensor([5, 2]), batch_first=True))
    with pytest.raises(ValueError, match=r"MaskedLSTM: expected h_0 of shape \(1, 2, 4\), got \(2, 2, 4\)"):
        lstm(Masked(x, torch.ones(2, 5)), (torch.zeros(2, 2, 4), torch.zeros(1, 2, 4)))
    gru = MaskedGRU(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match=r"MaskedGRU: expected h_0 of shape \(2, 5, 4\), got \(1, 5, 4\)"):
        gru(Masked(torch.randn(2, 5, 3), torch.ones(2, 5)), torch.zeros(1, 5, 4))


@pytest.mark.parametrize("cls", [MaskedLSTM, MaskedGRU, MaskedRNN])
def test_initial_state_of_another_dtype_raises_a_type_error(cls: type[torch.nn.Module]) -> None:
    # Regression: a float64 h_0/c_0 for float32 data raised a RuntimeError from the kernels
    # ("get_mkldnn_dtype: unsupported data type", "mat1 and mat2 must have the same dtype").
    x = Masked(torch.randn(3, 7, 5), torch.rand(3, 7) > 0.3)
    h = torch.randn(1, 3, 4, dtype=torch.float64)
    hx = (h, h) if cls is MaskedLSTM else h
    with pytest.raises(TypeError, match=rf"^{cls.__name__}: [hc]_0 \(1, 3, 4\) is torch.float64"):
        cls(5, 4, batch_first=True)(x, hx)


# ----------------------------------------------------------------- return_state and Sequential
@pytest.mark.parametrize("cls", [MaskedLSTM, MaskedGRU, MaskedRNN])
def test_return_state_false_returns_the_masked_output_only(cls: type[nn.RNNBase]) -> None:
    torch.manual_seed(0)
    full = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    only = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True, return_state=False)  # type: ignore[call-arg]
    only.load_state_dict(full.state_dict())
    assert full.state_dict().keys() == only.state_dict().keys()
    x = Masked(torch.randn(2, 5, 3), torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0]]))
    out = only(x)
    assert isinstance(out, Masked)
    ref, _ = full(x)
    assert torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)
    assert repr(only).endswith("bidirectional=True, return_state=False)")
    assert "return_state" not in repr(full)


@pytest.mark.parametrize("cls", [MaskedLSTM, MaskedGRU, MaskedRNN])
def test_return_state_must_be_a_bool(cls: type[nn.RNNBase]) -> None:
    with pytest.raises(TypeError, match=rf"^{cls.__name__}: return_state must be True or False, got 'no'"):
        cls(3, 4, return_state="no")  # type: ignore[call-arg]


def test_keras_masking_lstm_dense_as_written() -> None:
    """Keras' first model, ``Masking(0.0) -> LSTM -> Dense``, as a plain nn.Sequential."""
    from masknn.nn import MaskedLinear, MaskedTemporalPool, MaskFromValue

    torch.manual_seed(0)
    model = nn.Sequential(
        MaskFromValue(0.0),
        MaskedLSTM(3, 8, batch_first=True, return_state=False),
        MaskedTemporalPool("last"),
        MaskedLinear(8, 2),
    )
    lengths = torch.tensor([5, 2, 4])
    x = torch.randn(3, 5, 3)
    padded = torch.where(torch.arange(5).view(1, 5, 1) < lengths.view(3, 1, 1), x, 0.0)  # zero padding
    out = model(padded)
    assert isinstance(out, Masked) and out.data.shape == (3, 2) and bool(out.mask.all())
    # The same as the layers called one by one: the last valid output is h_n.
    lstm = MaskedLSTM(3, 8, batch_first=True)
    lstm.load_state_dict(model[1].state_dict())
    _, (h, _) = lstm(Masked.from_lengths(x, lengths))
    torch.testing.assert_close(out.data, model[3](Masked(h[0], torch.ones(3, 1, dtype=torch.bool))).data)
    out.data.sum().backward()
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in model.parameters())


def test_keras_sequence_to_sequence_with_time_distributed_linear() -> None:
    """``Masking -> GRU(return_sequences=True) -> TimeDistributed(Dense)`` as nn.Sequential."""
    from masknn.nn import MaskFromValue, TimeDistributedLinear

    torch.manual_seed(0)
    model = nn.Sequential(
        MaskFromValue(0.0),
        MaskedGRU(3, 6, batch_first=True, bidirectional=True, return_state=False),
        TimeDistributedLinear(12, 4),
    )
    x = torch.randn(2, 7, 3)
    x[0, 2] = 0.0  # a hole in the middle
    x[1, 5:] = 0.0  # padding at the end
    out = model(x)
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[0, 2] = False
    valid[1, 5:] = False
    assert out.data.shape == (2, 7, 4) and torch.equal(out.mask[..., 0], valid)
    assert bool((out.data[~valid] == 0).all())
    gru_out = model[1](Masked(x, valid))
    torch.testing.assert_close(out.data, model[2](gru_out).data)


def test_functional_call_uses_the_given_weights() -> None:
    # Regression: the layer read its cached _flat_weights, so torch.func.functional_call (and
    # per-sample gradients through it) silently used the module's own weights.
    torch.manual_seed(0)
    lstm = MaskedLSTM(3, 4, batch_first=True)
    x = Masked(torch.randn(2, 5, 3), torch.rand(2, 5) > 0.3)
    zeros = {k: torch.zeros_like(v) for k, v in lstm.named_parameters()}
    out, (h, c) = torch.func.functional_call(lstm, zeros, (x,))
    assert bool((out.data == 0).all()) and bool((h == 0).all()) and bool((c == 0).all())
    out2, _ = lstm(x)
    assert not bool((out2.data[x.mask[..., 0]] == 0).all())  # the module's own weights again


@pytest.mark.parametrize(
    "make",
    [
        lambda: MaskedLSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True),
        lambda: MaskedGRU(5, 4, bidirectional=True, batch_first=True, return_state=False),
        lambda: MaskedRNN(5, 4, nonlinearity="relu", num_layers=2, batch_first=True),
    ],
    ids=["LSTM", "GRU", "RNN-relu"],
)
def test_static_path_honours_the_contract(make: object) -> None:
    """The leakage contract on the static path (what torch.compile, export and ONNX run)."""
    from masknn.functional._select import composable_only
    from masknn.testing import assert_no_leakage

    torch.manual_seed(0)
    mask = torch.rand(3, 7) > 0.4
    mask[1] = False
    mask[2, 3] = False
    with composable_only():
        assert_no_leakage(make(), Masked(torch.randn(3, 7, 5), mask))  # type: ignore[operator]
