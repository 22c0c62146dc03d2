"""Reductions, losses, dense, attention, combining, temporal pooling, time-distributed:
every op through every transform and tracer (issue 8).

Each case builds inputs for a batch size ``n`` and a length ``L`` and a function of them.
The capabilities checked on each case:

* the eager fast path equals the composable path (``composable_only()``): values, masks,
  gradients;
* ``gradgradcheck`` in float64 (double backward);
* ``torch.compile(dynamic=True)`` on two lengths and another batch size equals eager
  (outputs, masks, gradients), with one compilation, and none for a new mask;
* ``torch.export`` rerun on another mask and data; ONNX (``dynamo=True``) with
  onnxruntime parity on another mask and data;
* ``torch.func.vmap`` and per-sample gradients equal a Python loop;
* NaN/Inf cotangents at masked output positions reach no gradient;
* output dtypes under ``torch.autocast('cpu', dtype=torch.bfloat16)`` equal the plain twin's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import masknn.functional as MF
from masknn import Masked
from masknn import nn as mnn
from masknn.functional._select import composable_only

Inputs = tuple[Tensor, ...]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _holes(shape: tuple[int, ...], g: torch.Generator, rate: float = 0.4) -> Tensor:
    m = torch.rand(shape, generator=g) >= rate
    if len(shape) >= 2 and shape[0] >= 2:
        m[1] = False  # a fully masked sample
    return m


def _nanfill(x: Tensor, m: Tensor) -> Tensor:
    return torch.where(m, x, torch.tensor(math.nan, dtype=x.dtype))


@dataclass
class Case:
    """One op: ``make(n, L, seed, dtype) -> inputs`` and ``fn(*inputs) -> output``.

    ``grad_args``: indices of the float inputs that take a gradient. ``twin``: the plain
    PyTorch op on the same inputs (for the autocast dtypes). ``module``: the op is a
    Module's forward with parameters (per-sample gradients through ``functional_call``).
    ``per_sample``: the op makes sense on one sample without the batch dimension.
    """

    id: str
    make: Callable[[int, int, int, torch.dtype], Inputs]
    fn: Callable[..., Any]
    grad_args: tuple[int, ...] = (0,)
    twin: Callable[..., Any] | None = None
    module: nn.Module | None = None
    per_sample: bool = True
    masked_out: bool = True  # the output has masked positions (else a scalar loss)
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs
def _img(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, 1, 3, L), g)
    x = torch.randn(n, 2, 3, L, generator=g, dtype=dtype)
    return _nanfill(x, m), m


def _img_pc(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, 2, 3, L), g)
    return _nanfill(torch.randn(n, 2, 3, L, generator=g, dtype=dtype), m), m


def _pair(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, 2, L), g)
    x = torch.randn(n, 2, L, generator=g, dtype=dtype)
    t = torch.randn(n, 2, L, generator=g, dtype=dtype)
    return _nanfill(x, m), torch.where(m, t, torch.tensor(math.inf, dtype=dtype)), m


def _binary(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, 1, L), g)
    x = torch.randn(n, 2, L, generator=g, dtype=dtype)
    t = (torch.rand(n, 2, L, generator=g) > 0.5).to(dtype)
    return _nanfill(x, m), t, m


def _logits(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, L), g)
    x = torch.randn(n, 3, L, generator=g, dtype=dtype)
    t = torch.where(m, torch.randint(0, 3, (n, L), generator=g), 77)
    return torch.where(m.unsqueeze(1), x, torch.tensor(math.nan, dtype=dtype)), t, m


def _logits_last(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    x, t, m = _logits(n, L, seed, dtype)
    return x.transpose(1, 2).contiguous(), t, m


def _seq(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, L, 1), g)
    return _nanfill(torch.randn(n, L, 4, generator=g, dtype=dtype), m), m


def _feat(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, L, 4), g)
    return _nanfill(torch.randn(n, L, 4, generator=g, dtype=dtype), m), m


def _two(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, 1, L), g)
    k = _holes((n, 2, L), g, 0.3)
    a = _nanfill(torch.randn(n, 2, L, generator=g, dtype=dtype), m)
    b = _nanfill(torch.randn(n, 2, L, generator=g, dtype=dtype), k)
    return a, m, b, k


def _qkv(n: int, L: int, seed: int, dtype: torch.dtype) -> Inputs:
    g = _gen(seed)
    m = _holes((n, L), g)
    x = _nanfill(torch.randn(n, L, 4, generator=g, dtype=dtype), m.unsqueeze(-1))
    return x, m


# ----------------------------------------------------------------------------- modules
torch.manual_seed(0)
_LIN = mnn.MaskedLinear(4, 3)
_LIN_P = mnn.MaskedLinear(4, 3, mode="partial")
_TDL = mnn.TimeDistributedLinear(4, 3)
_MHA = mnn.MaskedMultiheadAttention(4, 2, batch_first=True).eval()
_POOL_LAST = mnn.MaskedTemporalPool("last")
_POST = mnn.PostMask(nn.Linear(4, 3))


def _mha(x: Tensor, m: Tensor) -> Masked:
    # need_weights=True: the explicit attention path. With need_weights=False both this
    # layer and nn.MultiheadAttention run the fused CPU attention kernel, which has no
    # double backward (see test_plain_mha_fused_kernel_has_no_double_backward).
    out, _ = _MHA(Masked(x, m), need_weights=True)
    return out


def _mha_fused(x: Tensor, m: Tensor) -> Masked:
    out, _ = _MHA(Masked(x, m), need_weights=False)
    return out


def _plain_mha(x: Tensor, m: Tensor) -> Tensor:
    return nn.MultiheadAttention.forward(_MHA, x, x, x, need_weights=False)[0]


def _sdpa(x: Tensor, m: Tensor) -> Masked:
    return MF.masked_scaled_dot_product_attention(x, x, x, m, m)


CASES = [
    Case(
        "masked_sum", _img, lambda x, m: MF.masked_sum(x, m, dim=(-2, -1)), twin=lambda x, m: x.sum((-2, -1))
    ),
    Case("masked_sum-all", _img, lambda x, m: MF.masked_sum(x, m), twin=lambda x, m: x.sum()),
    Case(
        "masked_mean",
        _img,
        lambda x, m: MF.masked_mean(x, m, dim=(-2, -1)),
        twin=lambda x, m: x.mean((-2, -1)),
    ),
    Case(
        "masked_mean-per-channel",
        _img_pc,
        lambda x, m: MF.masked_mean(x, m, dim=-1, keepdim=True),
        twin=lambda x, m: x.mean(-1, keepdim=True),
    ),
    Case("masked_var", _img, lambda x, m: MF.masked_var(x, m, dim=-1), twin=lambda x, m: x.var(-1)),
    Case(
        "masked_std",
        _img_pc,
        lambda x, m: MF.masked_std(x, m, dim=(-2, -1)),
        twin=lambda x, m: x.std((-2, -1)),
    ),
    Case("masked_max", _img, lambda x, m: MF.masked_max(x, m, dim=-1), twin=lambda x, m: x.amax(-1)),
    Case(
        "masked_min",
        _img_pc,
        lambda x, m: MF.masked_min(x, m, dim=(-2, -1)),
        twin=lambda x, m: x.amin((-2, -1)),
    ),
    Case(
        "masked_logsumexp",
        _img,
        lambda x, m: MF.masked_logsumexp(x, m, dim=-1),
        twin=lambda x, m: x.logsumexp(-1),
    ),
    Case(
        "masked_softmax", _img, lambda x, m: MF.masked_softmax(x, m, dim=-1), twin=lambda x, m: x.softmax(-1)
    ),
    Case(
        "masked_log_softmax",
        _img_pc,
        lambda x, m: MF.masked_log_softmax(x, m, dim=-2),
        twin=lambda x, m: x.log_softmax(-2),
    ),
    Case(
        "masked_mse_loss",
        _pair,
        MF.masked_mse_loss,
        grad_args=(0, 1),
        twin=lambda x, t, m: F.mse_loss(x, t),
        masked_out=False,
    ),
    Case(
        "masked_mse_loss-none",
        _pair,
        lambda x, t, m: MF.masked_mse_loss(x, t, m, "none"),
        grad_args=(0, 1),
        twin=lambda x, t, m: F.mse_loss(x, t, reduction="none"),
        extra={"out_mask": lambda x, t, m: m},
    ),
    Case(
        "masked_l1_loss",
        _pair,
        lambda x, t, m: MF.masked_l1_loss(x, t, m, "sum"),
        grad_args=(0, 1),
        twin=lambda x, t, m: F.l1_loss(x, t, reduction="sum"),
        masked_out=False,
    ),
    Case(
        "masked_l1_loss-none",
        _pair,
        lambda x, t, m: MF.masked_l1_loss(x, t, m, "none"),
        grad_args=(0, 1),
        twin=lambda x, t, m: F.l1_loss(x, t, reduction="none"),
        extra={"out_mask": lambda x, t, m: m},
    ),
    Case(
        "masked_smooth_l1_loss",
        _pair,
        lambda x, t, m: MF.masked_smooth_l1_loss(x, t, m, beta=0.5),
        grad_args=(0, 1),
        twin=lambda x, t, m: F.smooth_l1_loss(x, t, beta=0.5),
        masked_out=False,
    ),
    Case(
        "masked_smooth_l1_loss-none",
        _pair,
        lambda x, t, m: MF.masked_smooth_l1_loss(x, t, m, "none", beta=0.5),
        grad_args=(0, 1),
        twin=lambda x, t, m: F.smooth_l1_loss(x, t, reduction="none", beta=0.5),
        extra={"out_mask": lambda x, t, m: m},
    ),
    Case(
        "masked_bce_with_logits",
        _binary,
        MF.masked_binary_cross_entropy_with_logits,
        grad_args=(0, 1),
        twin=lambda x, t, m: F.binary_cross_entropy_with_logits(x, t),
        masked_out=False,
    ),
    Case(
        "masked_bce_with_logits-none-pos_weight",
        _binary,
        lambda x, t, m: MF.masked_binary_cross_entropy_with_logits(
            x, t, m, "none", pos_weight=torch.tensor([2.0], dtype=x.dtype)
        ),
        grad_args=(0, 1),
        twin=lambda x, t, m: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
        extra={"out_mask": lambda x, t, m: m},
    ),
    Case(
        "masked_cross_entropy",
        _logits,
        lambda x, t, m: MF.masked_cross_entropy(x, t, m, label_smoothing=0.1),
        twin=lambda x, t, m: F.cross_entropy(x, t.clamp(0, 2)),
        masked_out=False,
        per_sample=False,
    ),
    Case(
        "masked_cross_entropy-class_last-none",
        _logits_last,
        lambda x, t, m: MF.masked_cross_entropy(x, t, m, "none", class_dim=-1),
        twin=lambda x, t, m: F.cross_entropy(x.transpose(1, 2), t.clamp(0, 2), reduction="none"),
        per_sample=False,
        extra={"out_mask": lambda x, t, m: m},
    ),
    Case(
        "masked_linear",
        _feat,
        lambda x, m: _LIN(Masked(x, m)),
        twin=lambda x, m: F.linear(x, _LIN.weight, _LIN.bias),
        module=_LIN,
    ),
    Case(
        "masked_linear-partial",
        _feat,
        lambda x, m: _LIN_P(Masked(x, m)),
        twin=lambda x, m: F.linear(x, _LIN_P.weight, _LIN_P.bias),
        module=_LIN_P,
    ),
    Case("masked_flatten", _img, lambda x, m: MF.masked_flatten(x, m, -2), twin=lambda x, m: x.flatten(-2)),
    Case(
        "time_distributed_linear",
        _seq,
        lambda x, m: _TDL(Masked(x, m)),
        twin=lambda x, m: F.linear(x, _TDL.weight, _TDL.bias),
        module=_TDL,
    ),
    Case("masked_multihead_attention", _qkv, _mha, twin=_plain_mha, module=_MHA, per_sample=False),
    Case(
        "masked_multihead_attention-fused",
        _qkv,
        _mha_fused,
        twin=_plain_mha,
        module=_MHA,
        per_sample=False,
        extra={"no_double_backward": True},
    ),
    Case("masked_sdpa", _qkv, _sdpa, twin=lambda x, m: F.scaled_dot_product_attention(x, x, x)),
    Case(
        "masked_add",
        _two,
        MF.masked_add,
        grad_args=(0, 2),
        twin=lambda a, m, b, k: a + b,
    ),
    Case("masked_mul", _two, MF.masked_mul, grad_args=(0, 2), twin=lambda a, m, b, k: a * b),
    Case(
        "masked_cat",
        _two,
        lambda a, m, b, k: MF.masked_cat([a, b], [m, k], dim=-2),
        grad_args=(0, 2),
        twin=lambda a, m, b, k: torch.cat([a, b], -2),
    ),
    Case(
        "masked_temporal_pool-mean",
        _seq,
        lambda x, m: MF.masked_temporal_pool(x, m, "mean", time_dim=-2),
        twin=lambda x, m: x.mean(-2),
    ),
    Case(
        "masked_temporal_pool-max",
        _feat,
        lambda x, m: MF.masked_temporal_pool(x, m, "max", time_dim=-2),
        twin=lambda x, m: x.amax(-2),
    ),
    Case(
        "masked_temporal_pool-last", _seq, lambda x, m: _POOL_LAST(Masked(x, m)), twin=lambda x, m: x[:, -1]
    ),
    Case(
        "PostMask-Linear",
        _seq,
        lambda x, m: _POST(Masked(x, m)),
        twin=lambda x, m: _POST.module(x),
        module=_POST,
    ),
    Case(
        "Elementwise-sigmoid",
        _img,
        lambda x, m: mnn.Elementwise(nn.Sigmoid())(Masked(x, m)),
        twin=lambda x, m: torch.sigmoid(x),
    ),
    Case(
        "MaskFromValue",
        _seq,
        lambda x, m: mnn.MaskFromValue(0.0)(Masked(x, m)),
        twin=lambda x, m: x,
        per_sample=False,
    ),
    Case("Unwrap", _img, lambda x, m: mnn.Unwrap()(Masked(x, m)), twin=lambda x, m: x, masked_out=False),
]
IDS = [c.id for c in CASES]


# ----------------------------------------------------------------------------- helpers
def _tensors(out: Any) -> list[Tensor]:
    """Output tensors, flattened: a Masked gives its data and its mask (expanded)."""
    if isinstance(out, Masked):
        return [out.data, out.mask.expand(out.data.shape)]
    if isinstance(out, Tensor):
        return [out]
    return [t for o in out for t in _tensors(o)]


def _float_outs(out: Any) -> list[Tensor]:
    return [t for t in _tensors(out) if t.is_floating_point()]


def _out_and_masks(case: Case, inputs: Inputs, out: Any) -> list[tuple[Tensor, Tensor | None]]:
    """(float output, its validity mask or None) pairs."""
    if isinstance(out, Masked):
        return [(out.data, out.mask.expand(out.data.shape))]
    if "out_mask" in case.extra:
        return [(out, case.extra["out_mask"](*inputs).expand(out.shape))]
    return [(out, None)]


def _loss_of(case: Case, inputs: Inputs, out: Any, seed: int = 7) -> Tensor:
    """A scalar of the float outputs with random weights (fixed by ``seed``)."""
    g = _gen(seed)
    total = torch.zeros((), dtype=torch.float64)
    for o, _ in _out_and_masks(case, inputs, out):
        w = torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)
        total = total + (o * w).sum().double()
    return total


def _run(
    case: Case, inputs: Inputs, fn: Callable[..., Any] | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """Outputs and gradients (w.r.t. the grad args) of ``fn`` (default ``case.fn``)."""
    args = [t.detach().clone().requires_grad_(i in case.grad_args) for i, t in enumerate(inputs)]
    out = (fn or case.fn)(*args)
    grads = torch.autograd.grad(
        _loss_of(case, inputs, out), [args[i] for i in case.grad_args], allow_unused=True
    )
    return [t.detach() for t in _tensors(out)], [
        g if g is not None else torch.zeros_like(args[i]) for g, i in zip(grads, case.grad_args)
    ]


def _assert_same(a: list[Tensor], b: list[Tensor], what: str, **tol: float) -> None:
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape, f"{what}[{i}]: shape {tuple(x.shape)} vs {tuple(y.shape)}"
        assert x.dtype == y.dtype, f"{what}[{i}]: dtype {x.dtype} vs {y.dtype}"
        if x.dtype == torch.bool or not x.is_floating_point():
            assert torch.equal(x, y), f"{what}[{i}] differs"
        else:
            torch.testing.assert_close(x, y, msg=f"{what}[{i}] differs", **tol)


# ----------------------------------------------------------------------------- eager paths
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fast_path_equals_composable_path(case: Case) -> None:
    inputs = case.make(3, 5, 0, torch.float32)
    out_fast, grads_fast = _run(case, inputs)
    with composable_only():
        out_comp, grads_comp = _run(case, inputs)
    _assert_same(out_fast, out_comp, "output")
    _assert_same(grads_fast, grads_comp, "gradient")
    for g in grads_fast:
        assert bool(torch.isfinite(g).all()), "a gradient is not finite"


def test_plain_mha_fused_kernel_has_no_double_backward() -> None:
    """Evidence for the n/a: nn.MultiheadAttention(need_weights=False) itself cannot double backward."""
    mha = nn.MultiheadAttention(4, 2, batch_first=True).double()
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(mha(x, x, x, need_weights=False)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="derivative for .*scaled_dot_product.* is not implemented"):
        torch.autograd.grad(g.sum(), x)


_GG = [c for c in CASES if not c.extra.get("no_double_backward")]


@pytest.mark.parametrize("case", _GG, ids=[c.id for c in _GG])
def test_gradgradcheck_float64(case: Case) -> None:
    inputs = case.make(2, 3, 1, torch.float64)
    # gradcheck perturbs every element: give the masked positions finite values (any value
    # works, since they never matter), and compare the double backward with finite differences.
    clean = tuple(torch.nan_to_num(t, nan=0.5, posinf=0.5) if t.is_floating_point() else t for t in inputs)
    module_dtype: torch.dtype | None = None
    if case.module is not None:
        module_dtype = next(case.module.parameters()).dtype
        case.module.double()
    try:
        diff = [clean[i].clone().requires_grad_(True) for i in case.grad_args]

        def f(*xs: Tensor) -> tuple[Tensor, ...]:
            args = list(clean)
            for i, t in zip(case.grad_args, xs):
                args[i] = t
            return tuple(_float_outs(case.fn(*args)))

        assert torch.autograd.gradgradcheck(f, tuple(diff), atol=1e-5, rtol=1e-4)
        with composable_only():
            assert torch.autograd.gradgradcheck(f, tuple(diff), atol=1e-5, rtol=1e-4)
    finally:
        if case.module is not None and module_dtype is not None:
            case.module.to(module_dtype)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.masked_out], ids=[c.id for c in CASES if c.masked_out]
)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_cotangent_at_masked_outputs_reaches_no_gradient(case: Case, bad: float) -> None:
    inputs = case.make(3, 5, 2, torch.float32)
    params = [] if case.module is None else [p for p in case.module.parameters()]

    def grads(fill: float) -> list[Tensor]:
        args = [t.detach().clone().requires_grad_(i in case.grad_args) for i, t in enumerate(inputs)]
        out = case.fn(*args)
        outs, cots = [], []
        g = _gen(3)
        for o, m in _out_and_masks(case, inputs, out):
            assert m is not None
            c = torch.randn(o.shape, generator=g).to(o.dtype)
            cots.append(torch.where(m, c, torch.tensor(fill, dtype=o.dtype)))
            outs.append(o)
        wrt = [args[i] for i in case.grad_args] + params
        got = torch.autograd.grad(outs, wrt, cots, allow_unused=True)
        return [x if x is not None else torch.zeros_like(w) for x, w in zip(got, wrt)]

    with_bad = grads(bad)
    with_zero = grads(0.0)
    for a, b in zip(with_bad, with_zero):
        assert bool(torch.isfinite(a).all()), "a NaN/Inf cotangent at a masked output leaked into a gradient"
        torch.testing.assert_close(a, b)
    with composable_only():
        for a, b in zip(grads(bad), with_zero):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.twin is not None], ids=[c.id for c in CASES if c.twin]
)
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16])
def test_autocast_dtypes_equal_the_plain_twin(case: Case, in_dtype: torch.dtype) -> None:
    inputs = case.make(3, 5, 4, in_dtype)
    clean = tuple(torch.nan_to_num(t, nan=0.0, posinf=0.0) if t.is_floating_point() else t for t in inputs)
    assert case.twin is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _float_outs(case.fn(*inputs))
        theirs = _float_outs(case.twin(*clean))
    assert [t.dtype for t in ours] == [t.dtype for t in theirs]


class _Wrap(nn.Module):
    def __init__(self, case: Case) -> None:
        super().__init__()
        self.case = case
        if case.module is not None:
            self.inner = case.module

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:
        return tuple(_tensors(self.case.fn(*xs)))


# ----------------------------------------------------------------------------- torch.func
def _per_sample(case: Case, inputs: Inputs) -> Inputs:
    """Per-sample inputs for vmap: the batch dimension itself, or batches of one sample."""
    return inputs if case.per_sample else tuple(t.unsqueeze(1) for t in inputs)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_equals_a_loop(case: Case) -> None:
    inputs = _per_sample(case, case.make(3, 5, 5, torch.float32))

    def one(*xs: Tensor) -> tuple[Tensor, ...]:
        return tuple(_tensors(case.fn(*xs)))

    batched = torch.func.vmap(one)(*inputs)
    for i in range(3):
        single = one(*(t[i] for t in inputs))
        _assert_same([b[i] for b in batched], list(single), f"sample {i}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_per_sample_gradients_equal_a_loop(case: Case) -> None:
    raw = case.make(3, 5, 6, torch.float32)
    inputs = _per_sample(
        case, tuple(torch.nan_to_num(t, nan=0.0, posinf=0.0) if t.is_floating_point() else t for t in raw)
    )
    wrap = _Wrap(case)
    params = {k: v.detach() for k, v in wrap.named_parameters()}

    def loss(p: dict[str, Tensor], *xs: Tensor) -> Tensor:
        outs = torch.func.functional_call(wrap, p, xs)
        return sum(
            ((o.double() * 0.5 + o.double() ** 2).sum() for o in outs if o.is_floating_point()),
            torch.zeros((), dtype=torch.float64),
        )

    argnums = (0, *(1 + i for i in case.grad_args))
    grad = torch.func.grad(loss, argnums=argnums)
    per = torch.func.vmap(grad, in_dims=(None, *([0] * len(inputs))))(params, *inputs)
    for n in range(3):
        one = grad(params, *(t[n] for t in inputs))
        for a, b in zip(per[1:], one[1:]):
            torch.testing.assert_close(a[n], b)
        for k in params:
            torch.testing.assert_close(per[0][k][n], one[0][k])


# ----------------------------------------------------------------------------- compile / export / ONNX
@pytest.mark.compile
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_compile_dynamic_shapes_and_no_recompile_for_a_new_mask(case: Case) -> None:
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    torch._dynamo.reset()
    compiled = torch.compile(case.fn, backend="aot_eager", dynamic=True, fullgraph=True)

    def entries() -> int:  # compiled variants of the function (a restart of the analysis is not one)
        return len(_debug_get_cache_entry_list(case.fn.__code__))

    # Batch sizes and lengths unlike the fixed sizes (2, 3, 4): no duck-sizing coincidence.
    for n, length, seed in ((6, 5, 10), (6, 7, 11), (9, 5, 12)):
        inputs = case.make(n, length, seed, torch.float32)
        out_c, grads_c = _run(case, inputs, compiled)
        out_e, grads_e = _run(case, inputs)
        _assert_same(out_c, out_e, f"compiled output at {(n, length)}", atol=1e-5, rtol=1e-5)
        _assert_same(grads_c, grads_e, f"compiled gradient at {(n, length)}", atol=1e-5, rtol=1e-5)
    assert entries() == 1, f"{entries()} compilations for two lengths and two batch sizes (dynamic=True)"
    other = case.make(9, 5, 13, torch.float32)  # same shapes, another mask and data
    _assert_same(
        _run(case, other, compiled)[0],
        _run(case, other)[0],
        "compiled output, new mask",
        atol=1e-5,
        rtol=1e-5,
    )
    assert entries() == 1, "a new mask of the same shape recompiled"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_export_reruns_on_another_mask(case: Case) -> None:
    inputs = case.make(3, 5, 20, torch.float32)
    ep = torch.export.export(_Wrap(case).eval(), inputs)
    other = case.make(3, 5, 21, torch.float32)
    got = list(ep.module()(*other))
    _assert_same(got, _tensors(case.fn(*other)), "exported program output")


def _groups() -> dict[str, list[Case]]:
    """Cases grouped by their inputs: one ONNX export per group (an export costs seconds)."""
    groups: dict[str, list[Case]] = {}
    for c in CASES:
        groups.setdefault(c.make.__name__.strip("_"), []).append(c)
    return groups


GROUPS = _groups()


class _Group(nn.Module):
    def __init__(self, cases: list[Case]) -> None:
        super().__init__()
        self.cases = cases
        self.inner = nn.ModuleList([c.module for c in cases if c.module is not None])

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:
        return tuple(t for c in self.cases for t in _tensors(c.fn(*xs)))


@pytest.mark.compile
@pytest.mark.parametrize("group", list(GROUPS))
def test_onnx_with_onnxruntime_on_another_mask(group: str) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    cases = GROUPS[group]
    make = cases[0].make
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _Group(cases).eval(), make(3, 5, 30, torch.float32), dynamo=True, verbose=False
        )
    assert program is not None
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    other = make(3, 5, 31, torch.float32)  # another mask and data
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(other), f"the ONNX model takes {names}"
    got = [torch.from_numpy(a) for a in session.run(None, {k: t.numpy() for k, t in zip(names, other)})]
    for case in cases:
        want = _tensors(case.fn(*other))
        mine, got = got[: len(want)], got[len(want) :]
        for i, (g, w) in enumerate(zip(mine, want)):
            if w.dtype == torch.bool:
                assert torch.equal(g, w), f"{case.id}: output {i} differs"
            else:
                torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4, msg=f"{case.id}: output {i} differs")
    assert not got
