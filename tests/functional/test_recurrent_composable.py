"""Recurrent layers beyond eager mode: torch.compile, torch.export, ONNX, torch.func, double
backward and autocast (issue 8, item 2). Inputs are small; compile tests carry the ``compile`` mark."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch._dynamo.testing
from torch import Tensor, nn

from masknn import Masked
from masknn import nn as mnn
from masknn.functional import masked_gru, masked_lstm, masked_rnn
from masknn.functional._select import composable_only

F_IN, HID = 5, 4  # input and hidden sizes differ from every batch size and length used here

# Which functional op runs which twin.
OPS: dict[str, tuple[Callable[..., Any], type[nn.RNNBase], dict[str, Any]]] = {
    "LSTM": (masked_lstm, nn.LSTM, {}),
    "GRU": (masked_gru, nn.GRU, {}),
    "RNN_TANH": (masked_rnn, nn.RNN, {}),
    "RNN_RELU": (masked_rnn, nn.RNN, {"nonlinearity": "relu"}),
}


def _data(n: int, t: int, seed: int, nan: bool = True) -> tuple[Tensor, Tensor]:
    """Sequences with holes anywhere: one with no valid step, one with holes in the middle."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, F_IN, generator=gen)
    valid = torch.rand(n, t, generator=gen) > 0.4
    valid[0] = False
    valid[1] = True
    valid[1, t // 3 : t // 2 + 1] = False
    if nan:
        x = torch.where(valid.unsqueeze(-1), x, torch.nan)
    return x, valid


class Functional(nn.Module):
    """A functional masked RNN with its own weights: (x, mask) -> (output, output mask, h_n[, c_n])."""

    def __init__(self, mode: str, **kw: Any) -> None:
        super().__init__()
        op, twin, extra = OPS[mode]
        self.op, self.mode, self.kw = op, mode, {**extra, **kw}
        rnn = twin(F_IN, HID, batch_first=True, **self.kw)
        self.weights = nn.ParameterList(rnn._flat_weights)  # type: ignore[arg-type]
        self.layers, self.bidirectional = rnn.num_layers, rnn.bidirectional

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        kw = {k: v for k, v in self.kw.items() if k != "nonlinearity" or self.mode.startswith("RNN")}
        out, state = self.op(x, mask, list(self.weights), hidden_size=HID, training=self.training, **kw)
        states = state if isinstance(state, tuple) else (state,)
        return (out.data, out.mask, *states)


def _assert_same(a: tuple[Tensor, ...], b: tuple[Tensor, ...], tol: float = 1e-5) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        if u.dtype == torch.bool:
            assert torch.equal(u, v)
        else:
            torch.testing.assert_close(u, v, rtol=tol, atol=tol)


def _grads(model: nn.Module, x: Tensor, mask: Tensor, fn: Callable[..., tuple[Tensor, ...]]) -> list[Tensor]:
    """Outputs and gradients (w.r.t. x and every weight) of a fixed loss."""
    xr = x.clone().requires_grad_(True)
    outs = fn(xr, mask)
    loss = outs[0].square().sum() + sum(o.sum() for o in outs[2:])
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, [xr, *params])
    return [o.detach() for o in outs] + list(grads)


# --------------------------------------------------------------------------- torch.compile
@pytest.mark.compile
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_compile_dynamic_equals_eager_and_a_new_mask_never_recompiles(mode: str) -> None:
    """aot_eager, dynamic=True, fullgraph (no graph break), training with gradients: equal to
    eager on two batch sizes and two lengths; a new mask and a new batch size reuse the graph.

    A new length does recompile: PyTorch's own decompositions of the fused RNN kernels
    specialize the number of steps (``nn.LSTM`` under ``allow_rnn`` does the same)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Functional(mode, bidirectional=mode == "LSTM").train()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter, dynamic=True, fullgraph=True)
    for call, (n, t, seed) in enumerate([(3, 5, 0), (3, 5, 1), (6, 5, 2), (4, 6, 3)]):
        x, mask = _data(n, t, seed)
        if call == 1:
            x = torch.where(mask.unsqueeze(-1), x, 1e30)  # other values at masked steps too
        eager = _grads(model, x, mask, model)
        got = _grads(model, x, mask, compiled)
        _assert_same(tuple(got), tuple(eager))
        assert bool((got[len(got) - len(list(model.parameters())) - 1][~mask] == 0).all())
        if call == 0:
            frames = counter.frame_count
        elif call < 3:  # a new mask, other values, a new batch size: the same graph
            assert counter.frame_count == frames, f"call {call}: recompiled"


@pytest.mark.compile
def test_compile_inductor_training_lstm() -> None:
    """Inductor in training (was: `expected Tensor() for op: aten.mkldnn_rnn_layer` and, under
    aot_eager, a forward that saved None): equal to eager, and a new mask does not recompile."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Functional("LSTM").train()
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled = torch.compile(model, backend=counter, dynamic=True, fullgraph=True)
    for seed in (0, 1):
        x, mask = _data(3, 6, seed)
        _assert_same(tuple(_grads(model, x, mask, compiled)), tuple(_grads(model, x, mask, model)), 1e-4)
        if seed == 0:
            frames = counter.frame_count
    assert counter.frame_count == frames  # the new mask did not recompile


@contextlib.contextmanager
def _allow_rnn() -> Iterator[None]:
    with torch._dynamo.config.patch(allow_rnn=True):
        yield


@pytest.mark.compile
@pytest.mark.parametrize("allow_rnn", [False, True])
def test_compile_keras_style_sequential(allow_rnn: bool) -> None:
    """The Keras-style model compiles. Dynamo refuses to trace into any nn.LSTM subclass unless
    ``torch._dynamo.config.allow_rnn`` is set: by default the layer is a graph break that runs
    its eager fast path (as nn.LSTM itself does); with the flag the layer is traced into the
    graph. (MaskFromValue graph-breaks on its own under dynamic=True, so the fullgraph check
    runs on the layers after it.)"""
    torch._dynamo.reset()
    torch.manual_seed(0)
    masking = mnn.MaskFromValue(0.0)
    rest = nn.Sequential(
        mnn.MaskedLSTM(F_IN, HID, batch_first=True, return_state=False),
        mnn.MaskedTemporalPool("last"),
        mnn.MaskedLinear(HID, 3),
    )
    model = nn.Sequential(masking, rest)
    x, mask = _data(4, 7, 0, nan=False)
    padded = torch.where(mask.unsqueeze(-1), x, 0.0)  # Keras: zero padding marks the holes
    with _allow_rnn() if allow_rnn else contextlib.nullcontext():
        if allow_rnn:  # the recurrent layer and everything after it: one graph
            out = torch.compile(rest, backend="aot_eager", dynamic=True, fullgraph=True)(masking(padded))
        else:
            out = torch.compile(model, backend="aot_eager", dynamic=True)(padded)
    ref = model(padded)
    torch.testing.assert_close(out.data, ref.data)
    assert torch.equal(out.mask, ref.mask)


# --------------------------------------------------------------------------- torch.export
@pytest.mark.parametrize("mode", list(OPS))
def test_export_program_is_correct_on_another_mask_and_batch_size(mode: str) -> None:
    """torch.export with a dynamic batch (the length is static, see below): the program rerun
    on other data, another mask and batch size equals eager, with no data-dependent op."""
    torch.manual_seed(0)
    model = Functional(mode, bidirectional=True).eval()
    x, mask = _data(3, 6, 0)
    n = torch.export.Dim("n", min=2, max=64)
    ep = torch.export.export(model, (x, mask), dynamic_shapes=({0: n}, {0: n}))
    targets = {str(node.target) for node in ep.graph.nodes if node.op == "call_function"}
    data_dependent = {"aten.nonzero.default", "aten.item.default", "aten._local_scalar_dense.default"}
    assert not targets & data_dependent
    for seed, batch in ((1, 3), (2, 7)):
        x2, mask2 = _data(batch, 6, seed)
        _assert_same(ep.module()(x2, mask2), model(x2, mask2))


def test_export_lstm_with_projection_and_the_module() -> None:
    torch.manual_seed(0)

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = mnn.MaskedLSTM(F_IN, HID, proj_size=2, batch_first=True, bidirectional=True)

        def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
            out, (h, c) = self.lstm(Masked(x, mask))
            return out.data, h, c

    model = Wrapped().eval()
    x, mask = _data(3, 6, 0)
    ep = torch.export.export(model, (x, mask))
    x2, mask2 = _data(3, 6, 4)
    _assert_same(ep.module()(x2, mask2), model(x2, mask2))


# --------------------------------------------------------------------------- ONNX
def _onnx_session(model: nn.Module, args: tuple[Tensor, ...], tmp_path: Any, **kw: Any) -> Any:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = str(tmp_path / "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, args, dynamo=True, verbose=False, **kw)
    assert program is not None
    program.save(path)
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _onnx_parity(session: Any, model: nn.Module, sizes: list[tuple[int, int]]) -> None:
    for seed, (n, t) in enumerate(sizes):
        x, mask = _data(n, t, 10 + seed)  # NaN at masked steps, holes in the middle
        got = session.run(None, {"x": x.numpy(), "mask": mask.numpy()})
        ref = model(x, mask)
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            torch.testing.assert_close(torch.from_numpy(g), r.detach(), rtol=1e-5, atol=1e-5)


ONNX_CASES = [
    ("LSTM", {"num_layers": 2, "bidirectional": True}, 8),
    ("GRU", {"bidirectional": True}, 8),
    ("LSTM", {}, 100),
]


@pytest.mark.parametrize("mode,kw,t", ONNX_CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(ONNX_CASES)])
def test_onnx_dynamo_export_matches_onnxruntime_on_other_masks_and_batches(
    mode: str, kw: dict[str, Any], t: int, tmp_path: Any
) -> None:
    """ONNX (dynamo=True), dynamic batch: onnxruntime equals eager on other data and masks
    with holes in the middle (NaN at masked steps), h_n and c_n included, up to 100 steps
    (the legacy export of the old code was wrong by 0.36 and crashed onnxruntime on longer
    sequences). Export time grows with the length: PyTorch traces the RNN step by step."""
    torch.manual_seed(0)
    model = Functional(mode, **kw).eval()
    session = _onnx_session(model, _data(3, t, 0), tmp_path, dynamic_shapes=({0: "n"}, {0: "n"}))
    _onnx_parity(session, model, [(3, t), (6, t)])


def test_onnx_legacy_exporter_is_correct_for_any_batch_and_length(tmp_path: Any) -> None:
    """The TorchScript-based exporter (dynamo=False) traces the static path: correct with a
    dynamic batch and length (it kept the old code's data-dependent branch: max error 0.36)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = Functional("LSTM", bidirectional=True).eval()
    path = str(tmp_path / "legacy.onnx")
    axes = {0: "n", 1: "t"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            _data(3, 12, 0),
            path,
            dynamo=False,
            input_names=["x", "mask"],
            dynamic_axes={"x": axes, "mask": axes},
        )
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    _onnx_parity(session, model, [(3, 12), (5, 40), (2, 100)])


@pytest.mark.parametrize("exporter", ["onnx", "export-strict", "export"])
def test_export_with_a_dynamic_length_is_refused_with_a_clear_error(exporter: str) -> None:
    """A dynamic number of steps cannot be exported (PyTorch's RNN decompositions unroll over
    time; nn.LSTM cannot either: its time-first ONNX export with a dynamic length is even
    silently wrong in torch 2.13). masknn refuses at export instead of producing a model that
    only works for the traced length."""
    torch.manual_seed(0)
    model = Functional("LSTM").eval()
    args = _data(3, 12, 0)
    with pytest.raises(Exception) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "onnx":
            pytest.importorskip("onnxscript")
            torch.onnx.export(model, args, dynamo=True, verbose=False, dynamic_shapes=({1: "t"}, {1: "t"}))
        else:
            t = torch.export.Dim("t", min=2, max=512)
            torch.export.export(
                model, args, dynamic_shapes=({1: t}, {1: t}), strict=exporter.endswith("strict")
            )
    if exporter != "export-strict":  # strict export stops at Dynamo's own error on the same line
        assert "need a static number of timesteps" in str(info.value)


def test_onnx_export_lstm_with_projection(tmp_path: Any) -> None:
    """ONNX's LSTM operator has no projection (nn.LSTM with proj_size exports to a model that
    onnxruntime rejects): masknn exports the step-by-step path instead, which is correct."""
    torch.manual_seed(0)
    model = Functional("LSTM", proj_size=2, bidirectional=True).eval()
    session = _onnx_session(model, _data(3, 8, 0), tmp_path)
    _onnx_parity(session, model, [(3, 8)])


# --------------------------------------------------------------------------- torch.func
@pytest.mark.parametrize("mode", list(OPS))
def test_vmap_equals_a_loop(mode: str) -> None:
    torch.manual_seed(0)
    model = Functional(mode, bidirectional=True)
    x, mask = _data(4, 6, 0)
    batched = torch.func.vmap(lambda a, m: model(a.unsqueeze(0), m.unsqueeze(0)))(x, mask)
    for i in range(4):
        _assert_same(tuple(o[i] for o in batched), model(x[i : i + 1], mask[i : i + 1]))


@pytest.mark.parametrize("cls", [mnn.MaskedLSTM, mnn.MaskedGRU, mnn.MaskedRNN])
def test_per_sample_gradients_equal_a_loop(cls: type[nn.RNNBase]) -> None:
    """vmap(grad(functional_call)): the classic per-sample gradient recipe (nn.GRU itself fails
    here, nn.LSTM works)."""
    torch.manual_seed(0)
    module = cls(F_IN, HID, batch_first=True, return_state=False)  # type: ignore[call-arg]
    x, mask = _data(4, 6, 0)
    params = {k: v.detach() for k, v in module.named_parameters()}

    def loss(p: dict[str, Tensor], xi: Tensor, mi: Tensor) -> Tensor:
        out = torch.func.functional_call(module, p, (Masked(xi.unsqueeze(0), mi.unsqueeze(0)),))
        return out.data.square().sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, mask)
    for i in range(4):
        module.zero_grad()
        loss(dict(module.named_parameters()), x[i], mask[i]).backward()
        for name, p in module.named_parameters():
            assert p.grad is not None
            torch.testing.assert_close(per_sample[name][i], p.grad, rtol=1e-5, atol=1e-6, msg=name)


# --------------------------------------------------------------------------- double backward
@pytest.mark.parametrize("mode", list(OPS))
@pytest.mark.parametrize("composable", [False, True], ids=["fast", "static"])
def test_gradgradcheck_float64(mode: str, composable: bool) -> None:
    torch.manual_seed(0)
    op, twin, extra = OPS[mode]
    rnn = twin(2, 3, batch_first=True, bidirectional=True, dtype=torch.float64, **extra)
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
    kw = {"nonlinearity": "relu"} if mode == "RNN_RELU" else {}

    def f(a: Tensor, wi: Tensor, wh: Tensor) -> tuple[Tensor, ...]:
        weights = [wi, wh, *rnn._flat_weights[2:]]
        with composable_only() if composable else contextlib.nullcontext():
            out, state = op(a, mask, weights, hidden_size=3, bidirectional=True, **kw)
        states = state if isinstance(state, tuple) else (state,)
        return (out.data, *states)

    assert torch.autograd.gradcheck(f, (x, w_ih, w_hh))
    assert torch.autograd.gradgradcheck(f, (x, w_ih, w_hh))


# --------------------------------------------------------------------------- autocast
AUTOCAST_CASES = [
    (mnn.MaskedLSTM, nn.LSTM, {}, torch.bfloat16),
    (mnn.MaskedLSTM, nn.LSTM, {"proj_size": 2}, torch.bfloat16),
    (mnn.MaskedGRU, nn.GRU, {}, torch.bfloat16),
    (mnn.MaskedRNN, nn.RNN, {}, torch.bfloat16),
    (mnn.MaskedRNN, nn.RNN, {"nonlinearity": "relu"}, torch.bfloat16),
    (mnn.MaskedGRU, nn.GRU, {}, torch.float16),
    (mnn.MaskedRNN, nn.RNN, {"nonlinearity": "relu"}, torch.float16),
    # nn.LSTM itself fails under float16 autocast on CPU (oneDNN has no float16 LSTM): n/a.
]


@pytest.mark.parametrize(
    "cls,twin,kw,dtype",
    AUTOCAST_CASES,
    ids=[f"{c[0].__name__}-{c[3]}-{i}" for i, c in enumerate(AUTOCAST_CASES)],
)
@pytest.mark.parametrize("path", ["fast", "fast-inference", "static"])
def test_autocast_dtypes_and_values_follow_the_twin(
    cls: type[nn.RNNBase], twin: type[nn.RNNBase], kw: dict[str, Any], dtype: torch.dtype, path: str
) -> None:
    """Under CPU autocast the outputs and states have nn.LSTM/GRU/RNN's dtypes, and the values
    equal the twin's (under the same autocast) run on each sequence's valid steps alone: the
    padded-step feature fits the autocast dtype (float32's largest value is inf in bfloat16)."""
    torch.manual_seed(0)
    masked = cls(F_IN, HID, batch_first=True, **kw)
    plain = twin(F_IN, HID, batch_first=True, **kw)
    plain.load_state_dict(masked.state_dict())
    x, mask = _data(3, 6, 0)
    with (
        torch.autocast("cpu", dtype=dtype),
        composable_only() if path == "static" else contextlib.nullcontext(),
        torch.no_grad() if path == "fast-inference" else contextlib.nullcontext(),
    ):
        out, state = masked(Masked(x, mask))
        ref_out, ref_state = plain(torch.where(mask.unsqueeze(-1), x, 0.0))
        states = state if isinstance(state, tuple) else (state,)
        ref_states = ref_state if isinstance(ref_state, tuple) else (ref_state,)
        assert out.data.dtype == ref_out.dtype
        assert [s.dtype for s in states] == [s.dtype for s in ref_states]
        for i in range(1, 3):  # sample 0 has no valid step
            ref_i, st_i = plain(x[i : i + 1, mask[i]])
            torch.testing.assert_close(out.data[i][mask[i]], ref_i[0], rtol=2e-2, atol=2e-2)
            h_i = st_i[0] if isinstance(st_i, tuple) else st_i
            torch.testing.assert_close(states[0][:, i], h_i[:, 0], rtol=2e-2, atol=2e-2)
            if len(states) == 2:
                torch.testing.assert_close(states[1][:, i], st_i[1][:, 0], rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "cls,twin,kw,dtype",
    AUTOCAST_CASES,
    ids=[f"{c[0].__name__}-{c[3]}-{i}" for i, c in enumerate(AUTOCAST_CASES)],
)
@pytest.mark.parametrize("path", ["fast", "static"])
def test_autocast_padded_steps_exact_and_gradients_finite(
    cls: type[nn.RNNBase], twin: type[nn.RNNBase], kw: dict[str, Any], dtype: torch.dtype, path: str
) -> None:
    """Under CPU autocast (the kernels compute in float16/bfloat16, the padded-step constant
    is the autocast dtype's): masked steps appended at the end, holding 1e30, inf or NaN,
    make the static path run more padded steps and change no output, state or gradient;
    every gradient is finite and zero at masked input steps; two layers, both directions, h_0
    (and c_0) given."""
    torch.manual_seed(0)
    layer = cls(F_IN, HID, num_layers=2, bidirectional=True, batch_first=True, **kw)
    x, mask = _data(3, 6, 0)
    h_out = kw.get("proj_size", HID)
    h0 = torch.randn(4, 3, h_out, generator=torch.Generator().manual_seed(1))
    hx: Any = (h0, torch.randn(4, 3, HID)) if cls is mnn.MaskedLSTM else h0
    results = []
    for extra, fill in ((0, 0.0), (3, 1e30), (2, float("inf")), (1, float("nan"))):
        xl = torch.cat([x, torch.full((3, extra, F_IN), fill)], 1).requires_grad_(True)
        ml = torch.cat([mask, torch.zeros(3, extra, dtype=torch.bool)], 1)
        with (
            torch.autocast("cpu", dtype=dtype),
            composable_only() if path == "static" else contextlib.nullcontext(),
        ):
            out, state = layer(Masked(xl, ml), hx)
            states = state if isinstance(state, tuple) else (state,)
            loss = out.data.float().pow(2).sum() + sum(s.float().sum() for s in states)
        grads = torch.autograd.grad(loss, [xl, *layer.parameters()])
        assert bool((out.data[:, 6:] == 0).all()) and bool((grads[0][~ml] == 0).all())
        assert all(bool(g.isfinite().all()) for g in grads)
        results.append((out.data[:, :6], *states, grads[0][:, :6], *grads[1:]))
    tight = {torch.bfloat16: 3e-2, torch.float16: 4e-3}[dtype]  # the GEMMs' rounding (usually 0)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=tight, atol=tight)
