"""masked_lstm / masked_gru / masked_rnn against Keras, packed nn.LSTM and a naive per-step loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from masknn import Masked
from masknn.functional import masked_gru, masked_lstm, masked_rnn
from masknn.functional.recurrent import masked_recurrent
from tests.conftest import reference_dir

TWINS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN, "RNN_RELU": nn.RNN}


def make_twin(mode: str, *args: object, **kwargs: object) -> nn.RNNBase:
    if mode == "RNN_RELU":
        kwargs["nonlinearity"] = "relu"
    return TWINS[mode](*args, **kwargs)  # type: ignore[arg-type]


def run(
    mode: str, rnn: nn.RNNBase, x: Tensor, mask: Tensor, hx: object = None
) -> tuple[Masked, Tensor, Tensor | None]:
    return masked_recurrent(
        mode,
        x,
        mask,
        rnn._flat_weights,  # type: ignore[arg-type]
        hx,  # type: ignore[arg-type]
        hidden_size=rnn.hidden_size,
        num_layers=rnn.num_layers,
        bias=rnn.bias,
        batch_first=rnn.batch_first,
        dropout=float(rnn.dropout),
        training=rnn.training,
        bidirectional=rnn.bidirectional,
        proj_size=getattr(rnn, "proj_size", 0),
    )


# ----------------------------------------------------------------- naive reference loop
def _cell(
    mode: str, x: Tensor, h: Tensor, c: Tensor | None, w: dict[str, Tensor]
) -> tuple[Tensor, Tensor | None]:
    gi = w["ih"] @ x + (w["b_ih"] if "b_ih" in w else 0)
    gh = w["hh"] @ h + (w["b_hh"] if "b_hh" in w else 0)
    if mode == "LSTM":
        assert c is not None
        i, f, g, o = (gi + gh).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if "hr" in w:
            h = w["hr"] @ h
        return h, c
    if mode == "GRU":
        ir, iz, in_ = gi.chunk(3)
        hr, hz, hn = gh.chunk(3)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - z) * n + z * h, None
    act = torch.tanh if mode == "RNN_TANH" else torch.relu
    return act(gi + gh), None


def naive_rnn(
    mode: str, rnn: nn.RNNBase, x: Tensor, valid: Tensor, hx: object = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Keras semantics by definition: walk each sequence's valid steps one at a time (batch first)."""
    n, t, _ = x.shape
    d = 2 if rnn.bidirectional else 1
    proj = getattr(rnn, "proj_size", 0)
    h_out = proj if proj else rnn.hidden_size
    if hx is None:
        h0 = x.new_zeros(rnn.num_layers * d, n, h_out)
        c0 = x.new_zeros(rnn.num_layers * d, n, rnn.hidden_size)
    elif isinstance(hx, tuple):
        h0, c0 = hx
    else:
        h0, c0 = hx, x.new_zeros(rnn.num_layers * d, n, rnn.hidden_size)  # type: ignore[assignment]
    inp = x
    h_n: list[list[Tensor]] = []
    c_n: list[list[Tensor]] = []
    for layer in range(rnn.num_layers):
        outs = []
        for direction in range(d):
            sfx = f"_l{layer}" + ("_reverse" if direction else "")
            p = dict(rnn.named_parameters())
            w = {"ih": p["weight_ih" + sfx], "hh": p["weight_hh" + sfx]}
            if rnn.bias:
                w["b_ih"], w["b_hh"] = p["bias_ih" + sfx], p["bias_hh" + sfx]
            if proj:
                w["hr"] = p["weight_hr" + sfx]
            k = layer * d + direction
            out = [[x.new_zeros(h_out) for _ in range(t)] for _ in range(n)]
            hs, cs = [], []
            for b in range(n):
                h, c = h0[k, b], c0[k, b]
                steps = [s for s in range(t) if bool(valid[b, s])]
                for s in reversed(steps) if direction else steps:
                    h, c2 = _cell(mode, inp[b, s], h, c if mode == "LSTM" else None, w)
                    c = c2 if c2 is not None else c
                    out[b][s] = h
                hs.append(h)
                cs.append(c)
            outs.append(torch.stack([torch.stack(o) for o in out]))
            h_n.append(hs)
            c_n.append(cs)
        inp = torch.cat(outs, -1)
    hn = torch.stack([torch.stack(h) for h in h_n])
    cn = torch.stack([torch.stack(c) for c in c_n]) if mode == "LSTM" else None
    return inp, hn, cn


def _holes_mask(n: int, t: int, gen: torch.Generator) -> Tensor:
    valid = torch.rand(n, t, generator=gen) > 0.4
    valid[0] = False  # empty sequence
    valid[1] = False
    valid[1, t // 2] = True  # one valid step in the middle
    valid[2] = True
    return valid


CASES = [
    ("LSTM", dict(num_layers=1, bidirectional=False)),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=3)),
    ("LSTM", dict(num_layers=1, bidirectional=False, bias=False)),
    ("GRU", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(num_layers=1, bidirectional=False, bias=False)),
    ("RNN_TANH", dict(num_layers=2, bidirectional=True)),
    ("RNN_RELU", dict(num_layers=1, bidirectional=True)),
]


@pytest.mark.parametrize("mode,kw", CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_holes_match_naive_loop_values_and_gradients(mode: str, kw: dict[str, object]) -> None:
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    rnn = make_twin(mode, 4, 5, batch_first=True, dtype=torch.float64, **kw)
    x = torch.randn(5, 7, 4, generator=gen, dtype=torch.float64)
    valid = _holes_mask(5, 7, gen)
    x_bad = torch.where(valid.unsqueeze(-1), x, torch.nan).requires_grad_(True)
    out, h, c = run(mode, rnn, x_bad, valid)
    xr = x.clone().requires_grad_(True)
    ref, ref_h, ref_c = naive_rnn(mode, rnn, xr, valid)
    torch.testing.assert_close(out.data, torch.where(valid.unsqueeze(-1), ref, 0), rtol=1e-10, atol=1e-10)
    assert torch.equal(out.mask, valid.unsqueeze(-1))
    torch.testing.assert_close(h, ref_h, rtol=1e-10, atol=1e-10)
    if mode == "LSTM":
        assert c is not None and ref_c is not None
        torch.testing.assert_close(c, ref_c, rtol=1e-10, atol=1e-10)
    # Gradients (w.r.t. inputs and every weight) agree with the loop's; zero at masked steps.
    g_out = torch.randn(out.data.shape, generator=gen, dtype=torch.float64)
    g_h = torch.randn(h.shape, generator=gen, dtype=torch.float64)
    loss = (out.data * g_out).sum() + (h * g_h).sum() + (c.sum() if c is not None else 0)
    ref_loss = (torch.where(valid.unsqueeze(-1), ref, 0) * g_out).sum() + (ref_h * g_h).sum()
    ref_loss = ref_loss + (ref_c.sum() if ref_c is not None else 0)
    params = list(rnn.parameters())
    grads = torch.autograd.grad(loss, [x_bad, *params])
    ref_grads = torch.autograd.grad(ref_loss, [xr, *params], allow_unused=True)
    assert bool((grads[0][~valid] == 0).all())
    torch.testing.assert_close(grads[0], ref_grads[0], rtol=1e-9, atol=1e-9)
    for g, rg in zip(grads[1:], ref_grads[1:]):
        torch.testing.assert_close(g, rg if rg is not None else torch.zeros_like(g), rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    t=st.integers(1, 8),
    bidirectional=st.booleans(),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(["LSTM", "GRU"]),
)
def test_property_any_mask_matches_naive_loop(
    n: int, t: int, bidirectional: bool, seed: int, mode: str
) -> None:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rnn = make_twin(mode, 3, 4, batch_first=True, bidirectional=bidirectional, dtype=torch.float64)
    x = torch.randn(n, t, 3, generator=gen, dtype=torch.float64)
    valid = torch.rand(n, t, generator=gen) > torch.rand((), generator=gen)
    with torch.no_grad():
        out, h, c = run(mode, rnn, x, valid)
        ref, ref_h, ref_c = naive_rnn(mode, rnn, x, valid)
    torch.testing.assert_close(out.data, torch.where(valid.unsqueeze(-1), ref, 0), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h, ref_h, rtol=1e-10, atol=1e-10)
    if c is not None:
        torch.testing.assert_close(c, ref_c, rtol=1e-10, atol=1e-10)


def test_initial_state_and_saturation_bound() -> None:
    # Large weights and a large hx: the padded steps must still leave c exactly unchanged.
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    rnn = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(40)
    x = torch.randn(4, 6, 3, generator=gen, dtype=torch.float64)
    valid = _holes_mask(4, 6, gen)
    hx = (
        100 * torch.randn(4, 4, 4, generator=gen, dtype=torch.float64),
        100 * torch.randn(4, 4, 4, generator=gen, dtype=torch.float64),
    )
    out, (h, c) = masked_lstm(
        x, valid, rnn._flat_weights, hx, hidden_size=4, num_layers=2, bidirectional=True
    )
    ref, ref_h, ref_c = naive_rnn("LSTM", rnn, x, valid, hx)
    torch.testing.assert_close(out.data, torch.where(valid.unsqueeze(-1), ref, 0), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h, ref_h, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(c, ref_c, rtol=1e-10, atol=1e-10)
    # Sample 0 has no valid step: the state is hx itself.
    assert torch.equal(h[:, 0], hx[0][:, 0]) and torch.equal(c[:, 0], hx[1][:, 0])
    # Gradients w.r.t. hx agree with the loop's.
    hx_req = (hx[0].clone().requires_grad_(True), hx[1].clone().requires_grad_(True))
    out, (h, c) = masked_lstm(
        x, valid, rnn._flat_weights, hx_req, hidden_size=4, num_layers=2, bidirectional=True
    )
    grads = torch.autograd.grad(out.data.sum() + h.pow(2).sum() + c.sum(), hx_req)
    hx_ref = (hx[0].clone().requires_grad_(True), hx[1].clone().requires_grad_(True))
    ref, ref_h, ref_c = naive_rnn("LSTM", rnn, x, valid, hx_ref)
    ref_grads = torch.autograd.grad(
        torch.where(valid.unsqueeze(-1), ref, 0).sum() + ref_h.pow(2).sum() + ref_c.sum(), hx_ref
    )
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_right_padding_equals_packed_sequence(mode: str) -> None:
    torch.manual_seed(0)
    kw: dict[str, object] = {"proj_size": 3} if mode == "LSTM" else {}
    rnn = make_twin(mode, 4, 6, num_layers=2, bidirectional=True, batch_first=True, **kw)
    x = torch.randn(5, 9, 4)
    lengths = torch.tensor([9, 4, 1, 7, 0])
    m = Masked.from_lengths(x, lengths)
    out, h, c = run(mode, rnn, m.data, m.mask)
    keep = lengths > 0  # pack_padded_sequence rejects empty sequences
    packed = pack_padded_sequence(x[keep], lengths[keep], batch_first=True, enforce_sorted=False)
    ref_packed, ref_state = rnn(packed)
    ref, _ = pad_packed_sequence(ref_packed, batch_first=True, total_length=9)
    torch.testing.assert_close(out.data[keep], ref, rtol=1e-5, atol=1e-6)
    ref_h = ref_state[0] if mode == "LSTM" else ref_state
    torch.testing.assert_close(h[:, keep], ref_h, rtol=1e-5, atol=1e-6)
    assert bool((h[:, ~keep] == 0).all()) and bool((out.data[~keep] == 0).all())
    if mode == "LSTM":
        assert c is not None
        torch.testing.assert_close(c[:, keep], ref_state[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_RELU"])
def test_all_valid_equals_plain_layer(mode: str) -> None:
    torch.manual_seed(0)
    rnn = make_twin(mode, 4, 6, num_layers=2, bidirectional=True)
    x = torch.randn(8, 3, 4)  # time first
    out, h, c = run(mode, rnn, x, torch.ones(8, 3, dtype=torch.bool))
    ref, state = rnn(x)
    torch.testing.assert_close(out.data, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, state[0] if mode == "LSTM" else state, rtol=1e-5, atol=1e-6)
    if mode == "LSTM":
        torch.testing.assert_close(c, state[1], rtol=1e-5, atol=1e-6)


def test_keras_reference_vectors() -> None:
    folder = reference_dir("keras_rnn")
    files = sorted(folder.glob("*.npz"))
    kinds = set()
    for path in files:
        z = np.load(path)
        meta = json.loads(str(z["meta"]))
        kinds.add((meta["cell"], meta["bidirectional"], meta["mask_kind"]))
        x = torch.tensor(z["x"])
        mask = torch.tensor(z["mask"])
        cls = {"lstm": nn.LSTM, "gru": nn.GRU}[meta["cell"]]
        rnn = cls(
            meta["input_size"], meta["hidden_size"], batch_first=True, bidirectional=meta["bidirectional"]
        )
        rnn.load_state_dict({k: torch.tensor(z[k]) for k in rnn.state_dict()})
        with torch.no_grad():
            if meta["cell"] == "lstm":
                out, (h, c) = masked_lstm(
                    x, mask, rnn._flat_weights, hidden_size=rnn.hidden_size, bidirectional=rnn.bidirectional
                )
                torch.testing.assert_close(c, torch.tensor(z["c_n"]), rtol=0, atol=1e-5, msg=path.name)
            else:
                out, h = masked_gru(
                    x, mask, rnn._flat_weights, hidden_size=rnn.hidden_size, bidirectional=rnn.bidirectional
                )
        ref = torch.tensor(z["outputs"])
        torch.testing.assert_close(out.data[mask], ref[mask], rtol=0, atol=1e-5, msg=path.name)
        assert bool((out.data[~mask] == 0).all())
        torch.testing.assert_close(h, torch.tensor(z["h_n"]), rtol=0, atol=1e-5, msg=path.name)
    # The vectors cover every mask kind for both cells.
    assert {k[2] for k in kinds} == {"right_padding", "left_padding", "holes"}
    assert {k[0] for k in kinds} == {"lstm", "gru"}


def test_left_padding_equals_right_padding_shifted() -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(3, 4, bidirectional=True, batch_first=True)
    x = torch.randn(1, 6, 3)
    right = torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    out_r, h_r = masked_gru(x, right, rnn._flat_weights, hidden_size=4, bidirectional=True)
    x_left = torch.cat([torch.full((1, 2, 3), 7.0), x[:, :4]], 1)
    left = right.flip(1)
    out_l, h_l = masked_gru(x_left, left, rnn._flat_weights, hidden_size=4, bidirectional=True)
    torch.testing.assert_close(out_l.data[:, 2:], out_r.data[:, :4])
    torch.testing.assert_close(h_l, h_r)


def test_empty_batch_and_empty_sequences() -> None:
    rnn = nn.LSTM(3, 4, batch_first=True)
    x = torch.full((2, 5, 3), torch.nan, requires_grad=True)
    out, (h, c) = masked_lstm(x, torch.zeros(2, 5, dtype=torch.bool), rnn._flat_weights, hidden_size=4)
    assert bool((out.data == 0).all()) and not bool(out.mask.any())
    assert bool((h == 0).all()) and bool((c == 0).all())
    (out.data.sum() + h.sum() + c.sum()).backward()
    assert x.grad is not None and bool((x.grad == 0).all())
    assert all(p.grad is None or bool(p.grad.isfinite().all()) for p in rnn.parameters())
    # Zero timesteps.
    out, (h, c) = masked_lstm(torch.zeros(2, 0, 3), torch.zeros(2, 0), rnn._flat_weights, hidden_size=4)
    assert out.data.shape == (2, 0, 4) and h.shape == (1, 2, 4) and bool((h == 0).all())


def test_time_first_and_unbatched() -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(6, 2, 3)
    valid = torch.rand(6, 2) > 0.3
    out, h = masked_gru(
        x, valid, rnn._flat_weights, hidden_size=4, num_layers=2, bidirectional=True, batch_first=False
    )
    out_b, h_b = masked_gru(
        x.transpose(0, 1), valid.t(), rnn._flat_weights, hidden_size=4, num_layers=2, bidirectional=True
    )
    assert out.data.shape == (6, 2, 8) and out.mask.shape == (6, 2, 1)
    torch.testing.assert_close(out.data, out_b.data.transpose(0, 1))
    torch.testing.assert_close(h, h_b)
    # Unbatched (T, F) with a (T,) mask, as nn.GRU accepts (T, F).
    out_u, h_u = masked_gru(
        x[:, 1],
        valid[:, 1],
        rnn._flat_weights,
        hidden_size=4,
        num_layers=2,
        bidirectional=True,
        batch_first=False,
    )
    torch.testing.assert_close(out_u.data, out.data[:, 1])
    torch.testing.assert_close(h_u, h[:, 1])


def test_rnn_nonlinearity_checked() -> None:
    rnn = nn.RNN(3, 4)
    with pytest.raises(ValueError, match="nonlinearity"):
        masked_rnn(
            torch.zeros(2, 1, 3), torch.ones(2, 1), rnn._flat_weights, hidden_size=4, nonlinearity="gelu"
        )


def test_bad_inputs_raise_clear_errors() -> None:
    rnn = nn.LSTM(3, 4, batch_first=True)
    w = rnn._flat_weights
    x = torch.randn(2, 5, 3)
    with pytest.raises(
        ValueError, match=r"masked_lstm: mask shape \(3, 5, 1\) does not fit data shape \(2, 5, 3\)"
    ):
        masked_lstm(x, torch.ones(3, 5, 1), w, hidden_size=4)
    with pytest.raises(ValueError, match=r"masked_lstm: .*\(2, 4\).*\(2, 5, 3\)"):
        masked_lstm(x, torch.ones(2, 4), w, hidden_size=4)
    with pytest.raises(ValueError, match="per-feature mask"):
        masked_lstm(x, torch.ones(2, 5, 3), w, hidden_size=4)
    with pytest.raises(ValueError, match=r"masked_lstm: expected h_0 of shape \(1, 2, 4\), got \(1, 3, 4\)"):
        masked_lstm(x, torch.ones(2, 5), w, (torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)), hidden_size=4)
    with pytest.raises(ValueError, match=r"masked_lstm: expected c_0 of shape \(1, 2, 4\), got \(2, 2, 4\)"):
        masked_lstm(x, torch.ones(2, 5), w, (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)), hidden_size=4)
    with pytest.raises(TypeError, match="tuple"):
        masked_lstm(x, torch.ones(2, 5), w, torch.zeros(1, 2, 4), hidden_size=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"masked_lstm: expected input with 3 features"):
        masked_lstm(torch.randn(2, 5, 7), torch.ones(2, 5), w, hidden_size=4)
    packed = pack_padded_sequence(x, torch.tensor([5, 2]), batch_first=True)
    with pytest.raises(TypeError, match="PackedSequence"):
        masked_lstm(packed, torch.ones(2, 5), w, hidden_size=4)  # type: ignore[arg-type]


def test_one_fused_kernel_call_per_layer_and_direction(monkeypatch: pytest.MonkeyPatch) -> None:
    # No Python loop over time: the kernel runs once per layer and direction, whatever T and the mask.
    calls = []
    real = torch._VF.lstm

    def counting(*args: object) -> object:
        calls.append(args[0].shape)  # type: ignore[attr-defined]
        return real(*args)

    monkeypatch.setattr(torch._VF, "lstm", counting)
    rnn = nn.LSTM(3, 4, num_layers=3, bidirectional=True, batch_first=True)
    valid = torch.rand(5, 40) > 0.5
    masked_lstm(
        torch.randn(5, 40, 3), valid, rnn._flat_weights, hidden_size=4, num_layers=3, bidirectional=True
    )
    assert len(calls) == 6
    # The kernel runs only as many steps as the longest sequence has valid steps (time-major input).
    assert all(shape[0] == int(valid.sum(1).max()) for shape in calls)
