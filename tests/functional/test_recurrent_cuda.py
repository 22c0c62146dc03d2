"""The recurrent layers on CUDA (the static path runs there): equal to the CPU fast path, exact
padding, NaN-safe, autocast dtypes as the twins'. Skipped without a GPU."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from masknn.functional.recurrent import masked_recurrent

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = [
    ("LSTM", nn.LSTM, {}),
    ("LSTM", nn.LSTM, {"proj_size": 3}),
    ("GRU", nn.GRU, {}),
    ("RNN_TANH", nn.RNN, {}),
    ("RNN_RELU", nn.RNN, {"nonlinearity": "relu"}),
]


def _run(mode: str, rnn: nn.RNNBase, x: Tensor, valid: Tensor, hx: object = None) -> tuple[Tensor, ...]:
    out, h, c = masked_recurrent(
        mode,
        x,
        valid,
        rnn._flat_weights,  # type: ignore[arg-type]
        hx,  # type: ignore[arg-type]
        hidden_size=rnn.hidden_size,
        num_layers=rnn.num_layers,
        batch_first=True,
        bidirectional=rnn.bidirectional,
        proj_size=getattr(rnn, "proj_size", 0),
    )
    return (out.data, out.mask, h) + (() if c is None else (c,))


def _case(dtype: torch.dtype, mode: str, twin: type[nn.RNNBase], kw: dict[str, object]) -> tuple:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    rnn = twin(5, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=dtype, **kw)
    x = torch.randn(4, 9, 5, generator=gen, dtype=torch.float64).to(dtype)
    valid = torch.rand(4, 9, generator=gen) > 0.4
    valid[0] = False
    valid[1] = True
    valid[1, 3:5] = False
    return rnn, torch.where(valid.unsqueeze(-1), x, torch.nan), valid


@pytest.mark.parametrize("mode,twin,kw", CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_cuda_equals_the_cpu_fast_path_values_and_gradients(mode: str, twin: type, kw: dict) -> None:
    rnn, x, valid = _case(torch.float64, mode, twin, kw)
    results = []
    for device in ("cpu", "cuda"):
        r = rnn.to(device)
        xr = x.to(device).requires_grad_(True)
        outs = _run(mode, r, xr, valid.to(device))
        cot = torch.where(valid.to(device).unsqueeze(-1), torch.ones_like(outs[0]), math.nan)
        loss = sum(o.sum() for o in outs[2:])
        grads = torch.autograd.grad([outs[0], loss], [xr, *r.parameters()], [cot, torch.ones_like(loss)])
        assert bool((grads[0][~valid.to(device)] == 0).all())  # NaN inputs and cotangents inert
        assert all(bool(g.isfinite().all()) for g in grads)
        results.append([o.detach().cpu() for o in outs] + [g.cpu() for g in grads])
    for a, b in zip(*results):
        if a.dtype == torch.bool:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("mode,twin,kw", CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_cuda_padding_is_exact_with_extreme_biases(
    dtype: torch.dtype, mode: str, twin: type, kw: dict
) -> None:
    """Appending masked steps (more padded kernel steps) changes nothing, with biases near the
    dtype's largest value, in the kernels of the GPU (cuDNN's gate functions included)."""
    rnn, x, valid = _case(dtype, mode, twin, kw)
    with torch.no_grad():
        big = torch.finfo(dtype).max / 10
        for name, p in rnn.named_parameters():
            if name.startswith("bias"):
                p.copy_(big * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)).sign())
    rnn = rnn.cuda()
    x, valid = x.cuda(), valid.cuda()
    longer = torch.cat([x, torch.full((4, 5, 5), math.nan, device="cuda", dtype=dtype)], 1)
    longer_valid = torch.cat([valid, torch.zeros(4, 5, dtype=torch.bool, device="cuda")], 1)
    with torch.no_grad():
        a = _run(mode, rnn, x, valid)
        b = _run(mode, rnn, longer, longer_valid)
    assert all(bool(t.isfinite().all()) for t in a if t.is_floating_point())
    torch.testing.assert_close(b[0][:, :9], a[0], rtol=1e-2, atol=1e-2)
    for u, w in zip(a[2:], b[2:]):
        torch.testing.assert_close(w, u, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("mode,twin,kw", CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_cuda_autocast_dtypes_follow_the_twin(mode: str, twin: type, kw: dict) -> None:
    rnn, x, valid = _case(torch.float32, mode, twin, kw)
    rnn = rnn.cuda()
    x, valid = x.cuda(), valid.cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        outs = _run(mode, rnn, x, valid)
        ref_out, ref_state = rnn(torch.where(valid.unsqueeze(-1), x, 0.0))
    ref_states = ref_state if isinstance(ref_state, tuple) else (ref_state,)
    assert outs[0].dtype == ref_out.dtype
    assert [s.dtype for s in outs[2:]] == [s.dtype for s in ref_states]
    assert bool(outs[0].isfinite().all())
