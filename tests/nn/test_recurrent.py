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
