"""Normalization, pooling, up-sampling and fills through every capability (issue 8).

One table of cases (a masknn Module, its input shapes, its plain twin); each test runs
every case through one capability:

* the eager fast path equals the composable path (``composable_only()``): outputs,
  masks, input and parameter gradients, running statistics;
* double backward (``gradgradcheck`` in float64), on the eager path (the fused nodes'
  differentiable backward) and on the composable path;
* NaN/Inf cotangents at masked output positions reach no valid gradient;
* ``torch.compile(dynamic=True)`` on two sizes and another batch size equals eager
  (outputs, masks, gradients) and a new mask of the same shape does not recompile;
* ``torch.export`` rerun on another mask and data; ONNX (``dynamo=True``) with
  onnxruntime on another mask, in eval mode;
* ``vmap`` and per-sample gradients (``vmap(grad(functional_call))``) equal a loop;
* output dtypes under ``torch.autocast('cpu', bfloat16)`` equal the plain twin's, and
  channels_last is kept wherever the twin keeps it.

The slow ones (compile, export, ONNX) carry the ``compile`` marker.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from masknn import Masked
from masknn import nn as mnn
from masknn.functional._select import composable_only


@dataclass
class Case:
    id: str
    make: Callable[[], nn.Module]
    shape: tuple[int, ...]  # data shape (N, C, *spatial) or (N, T, F)
    twin: Callable[[], nn.Module] | None = None  # the plain torch layer (None: dtype/format of x)
    per_channel: bool = False
    masked_out: bool = True  # outputs have masked positions (False for the fills)
    train: bool = True  # has a training mode that differs from eval
    grow: tuple[int, ...] = ()  # dimensions that may change size under dynamic compile
    vmap_train: bool = True  # per-sample gradients in training mode (False: eval only)
    onnx_na: bool = False  # torch's ONNX exporter has no translation for the twin either
    options: dict[str, Any] = field(default_factory=dict)

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 3 and self.id.startswith(("LayerNorm", "LearnedFill-seq")):
            return (shape[0], shape[1], 1)
        return (shape[0], shape[1] if self.per_channel else 1, *shape[2:])


def _bn(cls: type[nn.Module], c: int, **kw: Any) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        layer = cls(c, **kw)
        with torch.no_grad():
            for p in layer.parameters():
                p.uniform_(0.5, 1.5)
            if getattr(layer, "running_mean", None) is not None:
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
        return layer

    return make


IMG = (2, 3, 4, 5)
SP = (2, 3)  # spatial dims of an image that grow under dynamic compile
CASES = [
    Case("BatchNorm2d", _bn(mnn.MaskedBatchNorm2d, 3), IMG, _bn(nn.BatchNorm2d, 3), grow=SP),
    Case(
        "BatchNorm2d-pc-no-stats",
        _bn(mnn.MaskedBatchNorm2d, 3, track_running_stats=False),
        IMG,
        _bn(nn.BatchNorm2d, 3, track_running_stats=False),
        per_channel=True,
        grow=SP,
    ),
    Case("BatchNorm1d", _bn(mnn.MaskedBatchNorm1d, 3), (2, 3, 7), _bn(nn.BatchNorm1d, 3), grow=(2,)),
    Case("BatchNorm3d", _bn(mnn.MaskedBatchNorm3d, 1), (2, 1, 3, 4, 5), _bn(nn.BatchNorm3d, 1), grow=(2, 4)),
    Case(
        "InstanceNorm2d",
        _bn(mnn.MaskedInstanceNorm2d, 3, affine=True, track_running_stats=True),
        IMG,
        _bn(nn.InstanceNorm2d, 3, affine=True, track_running_stats=True),
        grow=SP,
    ),
    Case("GroupNorm", lambda: mnn.MaskedGroupNorm(1, 3), IMG, lambda: nn.GroupNorm(1, 3), grow=SP),
    Case(
        "LayerNorm",
        lambda: mnn.MaskedLayerNorm(6),
        (2, 4, 6),
        lambda: nn.LayerNorm(6),
        train=False,
        grow=(1,),
    ),
    Case("MaxPool2d", lambda: mnn.MaskedMaxPool2d(2), IMG, lambda: nn.MaxPool2d(2), train=False, grow=SP),
    Case(
        "MaxPool2d-pc-pad-ceil",
        lambda: mnn.MaskedMaxPool2d(3, 2, 1, ceil_mode=True),
        IMG,
        lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        per_channel=True,
        train=False,
        grow=SP,
    ),
    Case("MaxPool1d", lambda: mnn.MaskedMaxPool1d(2), (2, 3, 7), lambda: nn.MaxPool1d(2), train=False),
    Case("MaxPool3d", lambda: mnn.MaskedMaxPool3d(2), (2, 2, 4, 4, 4), lambda: nn.MaxPool3d(2), train=False),
    Case(
        "AvgPool2d",
        lambda: mnn.MaskedAvgPool2d(3, 2, 1),
        IMG,
        lambda: nn.AvgPool2d(3, 2, 1),
        train=False,
        grow=SP,
    ),
    Case("AvgPool1d", lambda: mnn.MaskedAvgPool1d(2), (2, 3, 7), lambda: nn.AvgPool1d(2), train=False),
    Case(
        "AvgPool3d",
        lambda: mnn.MaskedAvgPool3d(2),
        (2, 2, 4, 4, 4),
        lambda: nn.AvgPool3d(2),
        per_channel=True,
        train=False,
    ),
    Case(
        "AdaptiveAvgPool2d",
        lambda: mnn.MaskedAdaptiveAvgPool2d((2, 3)),
        IMG,
        lambda: nn.AdaptiveAvgPool2d((2, 3)),
        train=False,
        grow=SP,
    ),
    Case(
        "AdaptiveAvgPool3d",
        lambda: mnn.MaskedAdaptiveAvgPool3d(2),
        (2, 2, 4, 4, 4),
        lambda: nn.AdaptiveAvgPool3d(2),
        train=False,
        onnx_na=True,
    ),
    Case(
        "AdaptiveMaxPool2d",
        lambda: mnn.MaskedAdaptiveMaxPool2d((2, 2)),
        IMG,
        lambda: nn.AdaptiveMaxPool2d((2, 2)),
        per_channel=True,
        train=False,
        grow=SP,
        onnx_na=True,
    ),
    Case(
        "AdaptiveMaxPool1d",
        lambda: mnn.MaskedAdaptiveMaxPool1d(3),
        (2, 3, 7),
        lambda: nn.AdaptiveMaxPool1d(3),
        train=False,
        onnx_na=True,
    ),
    Case(
        "GlobalAvgPool",
        mnn.MaskedGlobalAvgPool,
        IMG,
        lambda: nn.AdaptiveAvgPool2d(1),
        train=False,
        grow=SP,
    ),
    Case(
        "GlobalMaxPool",
        mnn.MaskedGlobalMaxPool,
        IMG,
        lambda: nn.AdaptiveMaxPool2d(1),
        per_channel=True,
        train=False,
        grow=SP,
    ),
    Case(
        "Upsample-nearest",
        lambda: mnn.MaskedUpsample(scale_factor=2),
        IMG,
        lambda: nn.Upsample(scale_factor=2),
        train=False,
        grow=SP,
    ),
    Case(
        "Upsample-bilinear",
        lambda: mnn.MaskedUpsample(scale_factor=2, mode="bilinear"),
        IMG,
        lambda: nn.Upsample(scale_factor=2, mode="bilinear"),
        per_channel=True,
        train=False,
        grow=SP,
    ),
    Case(
        "Upsample-bilinear-ac",
        lambda: mnn.MaskedUpsample(size=(7, 9), mode="bilinear", align_corners=True),
        IMG,
        lambda: nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True),
        train=False,
    ),
    # Scale factors 2 and 4: no output coincides with an input, where rounding of the source
    # coordinate (eager ~1e-8, compiled exactly 0) decides whether a masked input's valid
    # neighbour has a positive weight (see masked_interpolate).
    Case(
        "Upsample-linear",
        lambda: mnn.MaskedUpsample(scale_factor=4, mode="linear"),
        (2, 3, 5),
        lambda: nn.Upsample(scale_factor=4, mode="linear"),
        train=False,
        grow=(2,),
    ),
    Case(
        "Upsample-trilinear",
        lambda: mnn.MaskedUpsample(scale_factor=2, mode="trilinear"),
        (2, 1, 3, 4, 5),
        lambda: nn.Upsample(scale_factor=2, mode="trilinear"),
        train=False,
    ),
    Case(
        "Upsample-area",
        lambda: mnn.MaskedUpsample(size=(3, 4), mode="area"),
        IMG,
        lambda: nn.Upsample(size=(3, 4), mode="area"),
        train=False,
    ),
    Case("Fill-zero", lambda: mnn.Fill("zero"), IMG, masked_out=False, train=False, grow=SP),
    Case("Fill-constant", lambda: mnn.Fill("constant", 2.5), IMG, masked_out=False, train=False, grow=SP),
    Case(
        "Fill-mean", lambda: mnn.Fill("mean"), IMG, per_channel=True, masked_out=False, train=False, grow=SP
    ),
    Case(
        "Fill-running_mean",
        lambda: mnn.Fill("running_mean", num_channels=3),
        IMG,
        masked_out=False,
        grow=SP,
        vmap_train=False,
    ),
    Case("LearnedFill", lambda: mnn.LearnedFill(3), IMG, masked_out=False, train=False, grow=SP),
    Case(
        "LearnedFill-seq",
        lambda: mnn.LearnedFill(5, channel_dim=-1),
        (2, 4, 5),
        masked_out=False,
        train=False,
        grow=(1,),
    ),
    Case("MaskChannel", mnn.MaskChannel, IMG, masked_out=False, train=False, grow=SP),
    Case("MaskChannel-pc", mnn.MaskChannel, IMG, per_channel=True, masked_out=False, train=False, grow=SP),
]
IDS = [c.id for c in CASES]
#: Cases whose training mode needs running statistics in place: vmap fails for the twin too.
BN_RUNNING = {"BatchNorm2d", "BatchNorm1d", "BatchNorm3d", "InstanceNorm2d"}


def _inputs(
    case: Case, shape: tuple[int, ...] | None = None, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = shape or case.shape
    m = torch.rand(case.mask_shape(shape), generator=g) > 0.4
    m.view(-1)[0] = True  # never an empty batch
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, m


def _holed(x: Tensor, m: Tensor, value: float = float("nan")) -> Tensor:
    return torch.where(m, x, torch.tensor(value, dtype=x.dtype))


def _modes(case: Case) -> list[bool]:
    return [True, False] if case.train else [False]


def _run(
    layer: nn.Module, x: Tensor, m: Tensor, cot: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None, dict[str, Tensor]]:
    """Output data, output mask, input gradient and parameter gradients for the cotangent."""
    x = x.detach().requires_grad_(True)
    out = layer(Masked(x, m))
    data, mask = out.data, out.mask
    if cot is None:
        cot = torch.randn(data.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        cot = cot.to(data.dtype)
    params = {k.removeprefix("_orig_mod."): p for k, p in layer.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(data, [x, *params.values()], cot, allow_unused=True)
    pg = {k: g for k, g in zip(params, grads[1:]) if g is not None}
    return data.detach(), mask, grads[0], pg


def _assert_runs_equal(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    da, ma, ga, pa = a
    db, mb, gb, pb = b
    torch.testing.assert_close(da, db, rtol=rtol, atol=atol, equal_nan=False)
    assert torch.equal(ma.expand(da.shape), mb.expand(db.shape))
    if ga is None or gb is None:
        assert ga is None and gb is None
    else:
        torch.testing.assert_close(ga, gb, rtol=rtol, atol=atol)
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=rtol, atol=atol)


# ------------------------------------------------------------------ eager == composable
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fast_path_equals_composable_path(case: Case, dtype: torch.dtype) -> None:
    x, m = _inputs(case, dtype=dtype)
    x = _holed(x, m)
    for training in _modes(case):
        fast = case.make().to(dtype).train(training)
        comp = copy.deepcopy(fast)
        a = _run(fast, x, m)
        with composable_only():
            b = _run(comp, x, m)
        _assert_runs_equal(a, b)
        for (name, buf_a), buf_b in zip(fast.named_buffers(), comp.buffers()):
            torch.testing.assert_close(buf_a, buf_b, rtol=1e-5, atol=1e-6, msg=name)
        assert bool(torch.isfinite(a[0]).all()) and (a[2] is None or bool(torch.isfinite(a[2]).all()))


# ---------------------------------------------------------------------- double backward
@pytest.mark.parametrize("path", ["eager", "composable"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradgradcheck_float64(case: Case, path: str) -> None:
    x, m = _inputs(case, dtype=torch.float64)
    if case.id.startswith(("MaxPool", "AdaptiveMaxPool", "GlobalMaxPool")):
        # Distinct values: finite differences across a tie of the maximum are not a gradient.
        x = torch.arange(x.numel(), dtype=torch.float64).reshape(x.shape)[..., torch.randperm(x.shape[-1])]
        x = x / x.numel()
    for training in _modes(case):
        layer = case.make().double().train(training)
        params = [p for p in layer.parameters() if p.requires_grad]
        names = [k for k, p in layer.named_parameters() if p.requires_grad]
        base = copy.deepcopy(layer)

        def fn(x_: Tensor, *ps: Tensor, base: nn.Module = base, names: list[str] = names) -> Tensor:
            buffers = {k: v.clone() for k, v in base.named_buffers()}  # no running-stat drift
            out = torch.func.functional_call(base, {**buffers, **dict(zip(names, ps))}, (Masked(x_, m),))
            return out.data

        inputs = (x.clone().requires_grad_(True), *[p.detach().clone().requires_grad_(True) for p in params])
        if path == "composable":
            with composable_only():
                assert torch.autograd.gradgradcheck(fn, inputs)
        else:
            assert torch.autograd.gradgradcheck(fn, inputs)


def test_double_backward_runs_the_fused_nodes_differentiable_backward() -> None:
    # The fused batch-norm nodes are used in eager mode; with create_graph their backward
    # differentiates the composable form: a gradient penalty trains.
    for training in (True, False):
        layer = _bn(mnn.MaskedBatchNorm2d, 3)().double().train(training)
        x, m = _inputs(CASES[0], dtype=torch.float64)
        x = _holed(x, m).requires_grad_(True)
        out = layer(Masked(x, m)).data
        assert "_BatchNorm" in type(out.grad_fn).__name__
        (g,) = torch.autograd.grad((out**3).sum(), x, create_graph=True)
        penalty = g.square().sum()
        penalty.backward()
        assert layer.weight.grad is not None and bool(torch.isfinite(layer.weight.grad).all())
        assert x.grad is not None and bool((x.grad[~m.expand(x.shape)] == 0).all())
        with composable_only():
            x2 = x.detach().requires_grad_(True)
            out2 = copy.deepcopy(layer)(Masked(x2, m)).data
            (g2,) = torch.autograd.grad((out2**3).sum(), x2, create_graph=True)
        torch.testing.assert_close(g, g2)


# ------------------------------------------------------- NaN/Inf cotangents at masked outputs
@pytest.mark.parametrize("path", ["eager", "composable"])
@pytest.mark.parametrize("case", [c for c in CASES if c.masked_out], ids=lambda c: c.id)
def test_nan_and_inf_cotangents_at_masked_outputs_reach_no_gradient(case: Case, path: str) -> None:
    x, m = _inputs(case)
    m[-1] = False  # a fully masked sample: every case then has masked outputs
    for training in _modes(case):
        layer = case.make().train(training)
        with composable_only() if path == "composable" else torch.enable_grad():
            ref = _run(copy.deepcopy(layer), x, m)
            valid = ref[1].expand(ref[0].shape)
            assert not bool(valid.all()), "the case must have masked outputs"
            base = torch.randn(ref[0].shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
            base = base.float()
            clean = _run(copy.deepcopy(layer), x, m, torch.where(valid, base, 0.0))
            for bad in (float("nan"), float("inf"), -float("inf")):
                got = _run(copy.deepcopy(layer), x, m, torch.where(valid, base, bad))
                assert got[2] is not None and bool(torch.isfinite(got[2]).all())
                for g in got[3].values():
                    assert bool(torch.isfinite(g).all())
                _assert_runs_equal(got, clean, rtol=0, atol=0)


# ------------------------------------------------------------------------- autocast, layout
def _twin_out(case: Case, x: Tensor) -> Tensor:
    if case.twin is None:
        return x
    twin = case.twin().to(x.dtype if x.dtype == torch.float64 else torch.float32)
    return twin(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_autocast_output_dtype_equals_the_twins(case: Case, dtype: torch.dtype) -> None:
    x, m = _inputs(case, dtype=dtype)
    for training in _modes(case):
        layer = case.make().train(training)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = layer(Masked(x, m)).data.dtype
            want = _twin_out(case, x).dtype
        assert got == want, f"{case.id}: {got} != twin's {want}"


@pytest.mark.parametrize("case", [c for c in CASES if len(c.shape) in (4, 5)], ids=lambda c: c.id)
def test_channels_last_kept_where_the_twin_keeps_it(case: Case) -> None:
    fmt = torch.channels_last if len(case.shape) == 4 else torch.channels_last_3d
    x, m = _inputs(case)
    x = x.contiguous(memory_format=fmt)
    for training in _modes(case):
        for path in ("eager", "composable"):
            layer = case.make().train(training)
            with composable_only() if path == "composable" else torch.no_grad():
                out = layer(Masked(x, m)).data
            twin = _twin_out(case, x)
            if twin.dim() == x.dim() and twin.is_contiguous(memory_format=fmt) and not twin.is_contiguous():
                assert out.is_contiguous(memory_format=fmt), f"{case.id} ({path}) lost channels_last"


# ---------------------------------------------------------------------- vmap, per-sample grads
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_and_per_sample_gradients_equal_a_loop(case: Case) -> None:
    x, m = _inputs(case)
    for training in _modes(case):
        if training and not case.vmap_train:
            continue
        layer = case.make().train(training)
        params = {k: p.detach() for k, p in layer.named_parameters()}
        buffers = {k: b.clone() for k, b in layer.named_buffers()}

        def one(
            p: dict[str, Tensor], x1: Tensor, m1: Tensor, layer: nn.Module = layer, bufs: Any = buffers
        ) -> Tensor:
            out = torch.func.functional_call(layer, {**p, **bufs}, (Masked(x1[None], m1[None]),))
            return out.data.square().sum()

        state = {**params, **buffers}

        def fwd(x1: Tensor, m1: Tensor, layer: nn.Module = layer, state: Any = state) -> Any:
            out = torch.func.functional_call(layer, state, (Masked(x1[None], m1[None]),))
            return out.data[0], out.mask.expand(out.data.shape)[0]

        if training and case.id in BN_RUNNING:
            # Running statistics updated in place: torch's own layer cannot be vmapped either.
            twin = case.twin().train()  # type: ignore[misc]
            with pytest.raises(RuntimeError):
                torch.func.vmap(lambda x1, twin=twin: twin(x1[None]))(x)
            with pytest.raises(RuntimeError):
                torch.func.vmap(fwd)(x, m)
            continue
        data, mask = torch.func.vmap(fwd)(x, m)
        per = torch.func.vmap(torch.func.grad(one, argnums=(0, 1)), in_dims=(None, 0, 0))(params, x, m)
        for i in range(x.shape[0]):
            d, k = fwd(x[i], m[i])
            torch.testing.assert_close(data[i], d)
            assert torch.equal(mask[i], k)
            gp, gx = torch.func.grad(one, argnums=(0, 1))(params, x[i], m[i])
            torch.testing.assert_close(per[1][i], gx, rtol=1e-5, atol=1e-6)
            for name in gp:
                torch.testing.assert_close(per[0][name][i], gp[name], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ compile, export, ONNX
def _grown(case: Case) -> list[tuple[int, ...]]:
    shapes = [case.shape]
    if case.grow:
        shapes.append(tuple(s + 2 if i in case.grow else s for i, s in enumerate(case.shape)))
    shapes.append((case.shape[0] + 1, *case.shape[1:]))
    return shapes


@pytest.mark.compile
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_compile_dynamic_equals_eager_and_a_new_mask_does_not_recompile(case: Case) -> None:
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    for training in _modes(case):
        eager = case.make().train(training)
        compiled_layer = copy.deepcopy(eager)
        counter = CompileCounterWithBackend("aot_eager")
        compiled = torch.compile(compiled_layer, backend=counter, dynamic=True, fullgraph=True)
        for k, shape in enumerate(_grown(case)):
            x, m = _inputs(case, shape, seed=k)
            x = _holed(x, m)
            _assert_runs_equal(_run(compiled, x, m), _run(eager, x, m))
            for (name, a), b in zip(eager.named_buffers(), compiled_layer.buffers()):
                torch.testing.assert_close(a, b, msg=name)
        frames = counter.frame_count
        x, m = _inputs(case, _grown(case)[-1], seed=11)  # a new mask (and data) of a seen shape
        _assert_runs_equal(_run(compiled, _holed(x, m), m), _run(eager, _holed(x, m), m))
        assert counter.frame_count == frames, f"{case.id}: a new mask recompiled"
        assert frames <= 2, f"{case.id}: {frames} compilations for {len(_grown(case))} shapes"


class _Wrap(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
        out = self.layer(Masked(x, m))
        return out.data, out.mask


@pytest.mark.compile
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_export_reruns_on_another_mask_and_data(case: Case) -> None:
    layer = case.make().eval()
    x, m = _inputs(case)
    ep = torch.export.export(_Wrap(layer), (_holed(x, m), m))
    x2, m2 = _inputs(case, seed=7)
    got = ep.module()(_holed(x2, m2, float("inf")), m2)
    want = _Wrap(layer)(_holed(x2, m2, float("inf")), m2)
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1])


@pytest.mark.compile
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_onnx_with_onnxruntime_on_another_mask(case: Case, tmp_path: Any) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    layer = case.make().eval()
    x, m = _inputs(case)
    path = tmp_path / f"{case.id}.onnx"
    if case.onnx_na:
        # n/a: the plain twin fails the same way (no ONNX function for its aten op).
        assert case.twin is not None
        with pytest.raises(Exception, match="Failed to convert the exported program to an ONNX model"):
            torch.onnx.export(case.twin().eval(), (x,), str(path), dynamo=True, verbose=False)
        with pytest.raises(Exception, match="Failed to convert the exported program to an ONNX model"):
            torch.onnx.export(_Wrap(layer), (x, m), str(path), dynamo=True, verbose=False)
        return
    torch.onnx.export(_Wrap(layer), (x, m), str(path), dynamo=True, verbose=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2, m2 = _inputs(case, seed=7)
    x2 = _holed(x2, m2, float("nan"))
    names = [i.name for i in sess.get_inputs()]
    got = sess.run(None, dict(zip(names, [x2.numpy(), m2.numpy()])))
    want = _Wrap(layer)(x2, m2)
    torch.testing.assert_close(torch.from_numpy(got[0]), want[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.from_numpy(got[1]).expand(want[0].shape), want[1].expand(want[0].shape))


@pytest.mark.compile
def test_inductor_batch_norm_and_max_pool_dynamic() -> None:
    # The main CNN ops under inductor (the other compile tests use aot_eager, inductor
    # compiles C++ and is slow on 2 cores): training gradients equal eager on two sizes,
    # and a new mask does not recompile.
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    torch.manual_seed(0)
    block = nn.Sequential(_bn(mnn.MaskedBatchNorm2d, 3)(), mnn.MaskedMaxPool2d(2))
    compiled_block = copy.deepcopy(block)
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(compiled_block, backend=counter, dynamic=True)
    case = Case("block", lambda: block, (2, 3, 6, 8))
    for k, shape in enumerate([(2, 3, 6, 8), (4, 3, 10, 12), (4, 3, 10, 12)]):
        x, m = _inputs(case, shape, seed=k)
        _assert_runs_equal(_run(compiled, _holed(x, m), m), _run(block, _holed(x, m), m), 1e-4, 1e-5)
        if k == 1:
            frames = counter.frame_count
    assert counter.frame_count == frames
