"""Partial convolution against naive float64 loops, the NVIDIA reference vectors and plain torch."""

from __future__ import annotations

import contextlib
import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import masknn.functional as MF
import masknn.functional.conv as conv_mod
from masknn import Masked
from masknn import nn as MNN
from masknn.functional._select import composable_only
from tests.conftest import reference_dir

CONV = {1: MF.partial_conv1d, 2: MF.partial_conv2d, 3: MF.partial_conv3d}
CONV_T = {1: MF.partial_conv_transpose1d, 2: MF.partial_conv_transpose2d, 3: MF.partial_conv_transpose3d}


def _any_valid(m, n: int, g: int, cg: int) -> bool:  # type: ignore[no-untyped-def]
    """Whether sample ``n`` holds a valid input in the channels of group ``g``."""
    if m.shape[1] == 1:
        return bool(m[n].any())
    return bool(m[n, g * cg : (g + 1) * cg].any())


def naive_pconv(x, m, w, b, stride, pad, dil, groups, padding_valid):  # type: ignore[no-untyped-def]
    """Liu et al. partial convolution, one output at a time (numpy float64).

    ``padding_valid``: padded taps count as present in the rescale but never make an output
    valid, except a window that reaches no input position at all (the bias alone, valid
    when the sample has a valid input in the group's channels).
    """
    x, m, w = x.double().numpy(), m.numpy(), w.double().numpy()
    n_ = x.shape[0]
    sp = x.shape[2:]
    nd = len(sp)
    co_, cg = w.shape[0], w.shape[1]
    k = w.shape[2:]
    per_channel = m.shape[1] > 1
    window = (cg if per_channel else 1) * math.prod(k)
    osz = [(sp[i] + 2 * pad - dil * (k[i] - 1) - 1) // stride + 1 for i in range(nd)]
    out = np.zeros((n_, co_, *osz))
    valid = np.zeros((n_, co_, *osz), dtype=bool)
    for n, co in itertools.product(range(n_), range(co_)):
        g = co // (co_ // groups)
        for o in itertools.product(*[range(s) for s in osz]):
            acc, cnt, padded, real = 0.0, 0, 0, 0
            for cl in range(cg):
                ci = g * cg + cl
                counted = per_channel or cl == 0
                for kk in itertools.product(*[range(s) for s in k]):
                    pos = tuple(o[i] * stride - pad + kk[i] * dil for i in range(nd))
                    if all(0 <= pos[i] < sp[i] for i in range(nd)):
                        real += counted
                        if m[(n, ci if per_channel else 0, *pos)]:
                            acc += w[(co, cl, *kk)] * x[(n, ci, *pos)]
                            cnt += counted
                    else:
                        padded += counted
            present = cnt + (padded if padding_valid else 0)
            if cnt or (padding_valid and real == 0 and _any_valid(m, n, g, cg)):
                out[(n, co, *o)] = acc * window / present + (0.0 if b is None else float(b[co]))
                valid[(n, co, *o)] = True
    return out, valid


def naive_pconv_t(x, m, w, b, stride, pad, dil, groups, padding_valid, opad=0):  # type: ignore[no-untyped-def]
    """Partial transposed convolution by scattering (numpy float64).

    The window of an output is the kernel taps of its stride phase; those that land outside
    the input are padding (present with ``padding_valid``, as in :func:`naive_pconv`).
    """
    x, m, w = x.double().numpy(), m.numpy(), w.double().numpy()
    n_, c = x.shape[:2]
    sp = x.shape[2:]
    nd = len(sp)
    cg, cog = c // groups, w.shape[1]
    co_ = cog * groups
    k = w.shape[2:]
    per_channel = m.shape[1] > 1
    per = cg if per_channel else 1
    osz = [(sp[i] - 1) * stride - 2 * pad + dil * (k[i] - 1) + 1 + opad for i in range(nd)]
    acc = np.zeros((n_, co_, *osz))
    cnt = np.zeros((n_, co_, *osz))
    full = np.zeros((n_, co_, *osz))
    for n, ci in itertools.product(range(n_), range(c)):
        g = ci // cg
        for i in itertools.product(*[range(s) for s in sp]):
            ok = bool(m[(n, ci if per_channel else 0, *i)])
            for col, kk in itertools.product(range(cog), itertools.product(*[range(s) for s in k])):
                o = tuple(i[d] * stride - pad + kk[d] * dil for d in range(nd))
                if not all(0 <= o[d] < osz[d] for d in range(nd)):
                    continue
                co = g * cog + col
                if per_channel or ci % cg == 0:
                    full[(n, co, *o)] += 1
                    cnt[(n, co, *o)] += ok
                if ok:
                    acc[(n, co, *o)] += w[(ci, col, *kk)] * x[(n, ci, *i)]
    window = np.full(osz, float(per))
    for d in range(nd):
        taps = np.array([sum((o + pad - t * dil) % stride == 0 for t in range(k[d])) for o in range(osz[d])])
        shape = [1] * nd
        shape[d] = -1
        window = window * taps.reshape(shape)
    valid = cnt > 0
    present = cnt
    if padding_valid:
        present = cnt + (window - full)
        anyv = np.array([[_any_valid(m, n, co // cog, cg) for co in range(co_)] for n in range(n_)])
        valid = valid | ((full == 0) & anyv.reshape((n_, co_) + (1,) * nd))
    bias = 0.0 if b is None else b.double().numpy().reshape((1, -1) + (1,) * nd)
    out = np.where(valid, acc * window / np.maximum(present, 1) + bias, 0.0)
    return out, valid


def _case(nd: int, c: int, co: int, groups: int, k: int, per_channel: bool, seed: int, size: int = 5):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    sp = (size,) * nd if nd < 3 else (4, 3, 5)
    x = torch.randn(2, c, *sp, generator=g, dtype=torch.float64)
    m = torch.rand(2, c if per_channel else 1, *sp, generator=g) > 0.45
    m[1] = False if nd == 1 else m[1]  # sample 1 fully masked in 1-d cases
    w = torch.randn(co, c // groups, *(k,) * nd, generator=g, dtype=torch.float64)
    b = torch.randn(co, generator=g, dtype=torch.float64)
    x = torch.where(m, x, torch.nan)  # garbage at masked positions
    return x, m, w, b


def _check(got, ref) -> None:  # type: ignore[no-untyped-def]
    out, valid = ref
    assert torch.equal(got.mask.expand(valid.shape), torch.from_numpy(valid))
    torch.testing.assert_close(got.data, torch.from_numpy(out), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("padding_valid", [False, True])
def test_partial_conv_matches_naive_loop(nd: int, per_channel: bool, padding_valid: bool) -> None:
    x, m, w, b = _case(nd, 4, 4, 2, 3, per_channel, seed=nd)
    for stride, pad, dil in [(1, 1, 1), (2, 2, 2)]:
        got = CONV[nd](x, m, w, b, stride, pad, dil, 2, padding_valid)
        _check(got, naive_pconv(x, m, w, b, stride, pad, dil, 2, padding_valid))


@settings(max_examples=25, deadline=None)
@given(
    c_g=st.integers(1, 3),
    groups=st.integers(1, 2),
    co_g=st.integers(1, 2),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.integers(0, 2),
    dil=st.integers(1, 2),
    per_channel=st.booleans(),
    padding_valid=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_partial_conv2d_property(
    c_g: int,
    groups: int,
    co_g: int,
    k: int,
    stride: int,
    pad: int,
    dil: int,
    per_channel: bool,
    padding_valid: bool,
    bias: bool,
    seed: int,
) -> None:
    x, m, w, b = _case(2, c_g * groups, co_g * groups, groups, k, per_channel, seed, size=6)
    bb = b if bias else None
    got = MF.partial_conv2d(x, m, w, bb, stride, pad, dil, groups, padding_valid)
    _check(got, naive_pconv(x, m, w, bb, stride, pad, dil, groups, padding_valid))


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("padding_valid", [False, True])
def test_partial_conv_transpose_matches_naive_loop(nd: int, per_channel: bool, padding_valid: bool) -> None:
    g = torch.Generator().manual_seed(7 + nd)
    sp = (4,) * nd if nd < 3 else (3, 2, 3)
    x = torch.randn(2, 4, *sp, generator=g, dtype=torch.float64)
    m = torch.rand(2, 4 if per_channel else 1, *sp, generator=g) > 0.5
    w = torch.randn(4, 3, *(3,) * nd, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = torch.where(m, x, torch.inf)
    for stride, pad, dil, opad in [(1, 0, 1, 0), (2, 1, 1, 1), (2, 0, 2, 0), (4, 1, 1, 2), (2, 2, 3, 2)]:
        got = CONV_T[nd](x, m, w, b, stride, pad, opad, 2, dil, padding_valid)
        _check(got, naive_pconv_t(x, m, w, b, stride, pad, dil, 2, padding_valid, opad))


@settings(max_examples=25, deadline=None)
@given(
    c_g=st.integers(1, 2),
    groups=st.integers(1, 2),
    co_g=st.integers(1, 2),
    k=st.integers(1, 3),
    stride=st.integers(1, 3),
    pad=st.integers(0, 2),
    dil=st.integers(1, 2),
    opad=st.integers(0, 2),
    per_channel=st.booleans(),
    padding_valid=st.booleans(),
    p_masked=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_partial_conv_transpose2d_property(
    c_g: int,
    groups: int,
    co_g: int,
    k: int,
    stride: int,
    pad: int,
    dil: int,
    opad: int,
    per_channel: bool,
    padding_valid: bool,
    p_masked: float,
    seed: int,
) -> None:
    opad = min(opad, max(stride, dil) - 1)
    g = torch.Generator().manual_seed(seed)
    c = c_g * groups
    x = torch.randn(2, c, 3, 4, generator=g, dtype=torch.float64)
    m = torch.rand(2, c if per_channel else 1, 3, 4, generator=g) >= p_masked
    w = torch.randn(c, co_g, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(co_g * groups, generator=g, dtype=torch.float64)
    x = torch.where(m, x, torch.nan)
    if (3 - 1) * stride - 2 * pad + dil * (k - 1) + opad + 1 < 1:  # an empty output: a clear error
        with pytest.raises(ValueError, match="partial_conv_transpose2d: the input's spatial size"):
            MF.partial_conv_transpose2d(x, m, w, b, stride, pad, opad, groups, dil, padding_valid)
        return
    got = MF.partial_conv_transpose2d(x, m, w, b, stride, pad, opad, groups, dil, padding_valid)
    _check(got, naive_pconv_t(x, m, w, b, stride, pad, dil, groups, padding_valid, opad))


def test_reference_vectors_nvidia() -> None:
    folder = reference_dir("partialconv")
    files = sorted(folder.glob("*.npz"))
    for f in files:
        z = np.load(f)
        meta = json.loads(str(z["meta"]))
        x, mask, w = (torch.from_numpy(z[k]) for k in ("x", "mask", "weight"))
        b = torch.from_numpy(z["bias"]) if z["bias"].size else None
        fn = CONV[int(meta["dims"])]
        got = fn(x, mask, w, b, meta["stride"], meta["padding"], meta["dilation"])
        ref, ref_mask = torch.from_numpy(z["out"]), torch.from_numpy(z["out_mask"]).bool()
        # NVIDIA returns C_out equal mask channels; a channel-shared mask here stays (N, 1, ...).
        assert torch.equal(got.mask.expand(ref_mask.shape), ref_mask), f.name
        scale = float(ref.abs().max()) if ref.numel() else 1.0
        torch.testing.assert_close(got.data, ref, rtol=1e-6, atol=1e-7 * max(scale, 1.0), msg=f.name)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_all_valid_matches_plain_conv(nd: int) -> None:
    torch.manual_seed(0)
    sp = (7,) * nd
    x = torch.randn(2, 4, *sp, dtype=torch.float64)
    w = torch.randn(6, 2, *(3,) * nd, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    ones = torch.ones(2, 1, *sp, dtype=torch.bool)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    plain = conv(x, w, b, 2, 1, 1, 2)
    got = CONV[nd](x, ones, w, b, 2, 1, 1, 2, padding_valid=True)
    torch.testing.assert_close(got.data, plain)
    assert bool(got.mask.all())
    # Without padding_valid the border windows are re-weighted, the interior is plain.
    got = CONV[nd](x, ones, w, b, 2, 1, 1, 2)
    inner = (slice(None), slice(None)) + (slice(1, -1),) * nd
    torch.testing.assert_close(got.data[inner], plain[inner])
    assert not torch.allclose(got.data, plain)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_all_valid_transpose_matches_plain(nd: int) -> None:
    torch.manual_seed(0)
    sp = (4,) * nd
    x = torch.randn(2, 4, *sp, dtype=torch.float64)
    w = torch.randn(4, 3, *(3,) * nd, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    ones = torch.ones(1, 1, *(1,) * nd, dtype=torch.bool)
    conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    plain = conv_t(x, w, b, 2, 1, 1, 1, 1)
    got = CONV_T[nd](x, ones, w, b, 2, 1, 1, 1, 1, padding_valid=True)
    torch.testing.assert_close(got.data, plain)


def test_same_padding_and_asymmetric() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    m = torch.rand(2, 1, 6, 7) > 0.3
    w = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    got = MF.partial_conv2d(x, m, w, None, 1, "same")
    assert got.data.shape == (2, 2, 6, 7)
    # 'same' with an even kernel pads (1, 2) x (0, 1): compare with explicit padding of a bigger input.
    xp = F.pad(torch.where(m, x, 0), [0, 1, 1, 2])
    mp = F.pad(m, [0, 1, 1, 2])
    ref = MF.partial_conv2d(xp, mp, w, None, 1, 0)
    torch.testing.assert_close(got.data, ref.data)
    assert torch.equal(got.mask, ref.mask)
    valid = MF.partial_conv2d(x, m, w, None, 1, "valid")
    assert valid.data.shape == (2, 2, 3, 6)


def test_gradcheck_float64() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    for m in (torch.rand(2, 1, 5, 5) > 0.4, torch.rand(2, 4, 5, 5) > 0.4):
        assert torch.autograd.gradcheck(
            lambda x, w, b, m=m: MF.partial_conv2d(x, m, w, b, 1, 1, 1, 2).data, (x, w, b)
        )
        assert torch.autograd.gradcheck(
            lambda x, w, b, m=m: MF.partial_conv_transpose2d(x, m, w, b, 2, 1, 1, 2).data,
            (x, w[:, :2].detach().requires_grad_(), b[:4].detach().requires_grad_()),
        )


def test_masked_values_get_zero_gradient_and_do_not_leak() -> None:
    torch.manual_seed(0)
    m = torch.rand(2, 3, 6, 6) > 0.5
    x = torch.where(m, torch.randn(2, 3, 6, 6), torch.nan).requires_grad_()
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    out = MF.partial_conv2d(x, m, w, torch.randn(4), padding=1)
    out.data.sum().backward()
    assert x.grad is not None and w.grad is not None
    assert bool((x.grad[~m] == 0).all()) and bool(torch.isfinite(x.grad).all())
    assert bool(torch.isfinite(w.grad).all()) and bool(torch.isfinite(out.data).all())


def test_half_precision_counts_in_float32() -> None:
    x = torch.randn(1, 2, 8, 8).to(torch.bfloat16)
    m = torch.rand(1, 2, 8, 8) > 0.5
    w = torch.randn(3, 2, 3, 3).to(torch.bfloat16)
    got = MF.partial_conv2d(x, m, w, padding=1)
    ref = MF.partial_conv2d(x.float(), m, w.float(), padding=1)
    assert got.data.dtype == torch.bfloat16
    torch.testing.assert_close(got.data.float(), ref.data, rtol=0.05, atol=0.1)


def test_bad_inputs_raise_clear_errors() -> None:
    x = torch.randn(2, 3, 5, 5)
    w = torch.randn(4, 3, 3, 3)
    with pytest.raises(
        ValueError, match=r"partial_conv2d: mask shape \(2, 1, 4, 5\) does not fit data shape"
    ):
        MF.partial_conv2d(x, torch.ones(2, 1, 4, 5, dtype=torch.bool), w)
    with pytest.raises(ValueError, match=r"partial_conv2d: a torch\.float32 mask must hold only 0"):
        MF.partial_conv2d(x, torch.full((2, 1, 5, 5), 0.5), w)
    with pytest.raises(
        ValueError, match=r"partial_conv2d: expected 4-d data \(N, C, H, W\), got shape \(3, 5, 5\)"
    ):
        MF.partial_conv2d(x[0], torch.ones(3, 5, 5), w)
    with pytest.raises(
        ValueError, match=r"data shape \(2, 3, 5, 5\) has 3 channels, but weight shape \(4, 2, 3, 3\)"
    ):
        MF.partial_conv2d(x, torch.ones(2, 1, 5, 5), torch.randn(4, 2, 3, 3))
    with pytest.raises(TypeError, match="partial_conv2d: expected floating point data"):
        MF.partial_conv2d(torch.ones(2, 3, 5, 5, dtype=torch.int64), torch.ones(2, 1, 5, 5), w)
    with pytest.raises(ValueError, match=r"padding='same' is not supported for strided"):
        MF.partial_conv2d(x, torch.ones(2, 1, 5, 5), w, stride=2, padding="same")
    with pytest.raises(
        TypeError, match=r"partial_conv2d: weight \(torch\.float64 on cpu\) and data \(torch\.float32"
    ):
        MF.partial_conv2d(x, torch.ones(2, 1, 5, 5), w.double())
    # A float 0/1 mask is accepted.
    out = MF.partial_conv2d(x, (torch.rand(2, 1, 5, 5) > 0.5).float(), w)
    assert out.mask.dtype == torch.bool


# ----------------------------------------------------------------------------- the two paths
def _path(path: str) -> contextlib.AbstractContextManager[None]:
    """``composable_only()`` for the composable path, nothing for the eager fast path."""
    return composable_only() if path == "composable" else contextlib.nullcontext()


# (name, op, weight shape (C_in, C_out), keyword arguments): direct and transposed, shared and
# per-channel masks, groups, strides, dilation, asymmetric padding, padding_valid, gaps.
PATH_CASES = [
    ("conv2d", 2, False, dict(stride=1, padding=1)),
    ("conv2d-pc-groups-pv", 2, True, dict(stride=2, padding=2, dilation=2, groups=2, padding_valid=True)),
    ("conv2d-pad-only-windows", 2, False, dict(stride=2, padding=3, padding_valid=True)),
    ("conv2d-asymmetric-pv", 2, False, dict(padding=((1, 2), (0, 1)), padding_valid=True)),
    ("conv2d-same-even", 2, True, dict(padding="same")),
    ("conv1d-pc", 1, True, dict(stride=2, padding=1, dilation=2)),
    ("conv3d-pv", 3, False, dict(padding=1, padding_valid=True)),
    ("convT2d", 2, False, dict(stride=2, padding=1, output_padding=1, transposed=True)),
    ("convT2d-gaps-pv", 2, False, dict(stride=3, output_padding=2, padding_valid=True, transposed=True)),
    (
        "convT2d-pc-groups-pv",
        2,
        True,
        dict(stride=2, dilation=2, groups=2, padding_valid=True, transposed=True),
    ),
    ("convT1d", 1, False, dict(stride=2, transposed=True)),
    ("convT3d-pv", 3, True, dict(stride=2, padding=1, padding_valid=True, transposed=True)),
]


def _path_case(nd: int, per_channel: bool, kw: dict, seed: int = 0, dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    """Inputs with NaN and Inf at masked positions, and a callable ``f(x, w, b) -> Masked``."""
    kw = dict(kw)
    transposed = kw.pop("transposed", False)
    g = torch.Generator().manual_seed(seed)
    groups = kw.get("groups", 1)
    sp = {1: (7,), 2: (5, 6), 3: (3, 4, 3)}[nd]
    k = (2,) * nd if "same" in str(kw.get("padding")) else (3,) * nd
    if transposed and kw.get("stride") == 3:
        k = (2,) * nd
    x = torch.randn(2, 4, *sp, generator=g, dtype=dtype)
    m = torch.rand(2, 4 if per_channel else 1, *sp, generator=g) > 0.4
    m[1, :, 0] = False  # a masked row
    x = torch.where(m, x, torch.nan)
    x.view(-1)[0] = torch.inf if not bool(m.expand(x.shape).reshape(-1)[0]) else x.view(-1)[0]
    wshape = (4, 6 // groups, *k) if transposed else (6, 4 // groups, *k)
    w = torch.randn(wshape, generator=g, dtype=dtype)
    b = torch.randn(6, generator=g, dtype=dtype)
    op = CONV_T[nd] if transposed else CONV[nd]

    def f(x, w, b):  # type: ignore[no-untyped-def]
        return op(x, m, w, b, **kw)

    return x, m, w, b, f


def _run_path(f, x, w, b, cot_nan: bool = True):  # type: ignore[no-untyped-def]
    """Output, mask and the gradients of (x, w, b) for a cotangent with NaN at masked outputs."""
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    out = f(x, w, b)
    cot = torch.randn(out.data.shape, generator=torch.Generator().manual_seed(5), dtype=out.data.dtype)
    cot = cot.to(out.data.device)
    if cot_nan:
        cot = torch.where(out.mask.expand(cot.shape), cot, torch.nan)
    gx, gw, gb = torch.autograd.grad(out.data, (x, w, b), cot)
    return out, (gx, gw, gb)


@pytest.mark.parametrize(("name", "nd", "per_channel", "kw"), PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_both_paths_equal_forward_and_gradients(name: str, nd: int, per_channel: bool, kw: dict) -> None:
    x, m, w, b, f = _path_case(nd, per_channel, kw)
    fast, fast_grads = _run_path(f, x, w, b)
    with composable_only():
        comp, comp_grads = _run_path(f, x, w, b)
    fused = "asymmetric" not in name and "same" not in name  # asymmetric padding: composite in eager too
    assert (type(fast.data.grad_fn).__name__ == "_PartialConvFnBackward") == fused
    assert "PartialConvFn" not in type(comp.data.grad_fn).__name__
    assert torch.equal(fast.mask, comp.mask)
    torch.testing.assert_close(fast.data, comp.data, rtol=1e-12, atol=1e-12)
    for a, c in zip(fast_grads, comp_grads):
        assert bool(torch.isfinite(a).all())  # NaN cotangents at masked outputs reach no gradient
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
    masked = ~m.expand(x.shape)
    assert bool((fast_grads[0][masked] == 0).all()) and bool((comp_grads[0][masked] == 0).all())
    assert bool((fast.data[~fast.mask.expand(fast.data.shape)] == 0).all())


@pytest.mark.parametrize("one_call", [True, False])
@pytest.mark.parametrize("needs", ["xwb", "x", "w", "wb", "xb"])
@pytest.mark.parametrize("case", ["conv2d", "conv2d-pc-groups-pv", "conv1d-pc", "convT2d"])
def test_every_fast_backward_branch_equals_the_composable_path(
    case: str, needs: str, one_call: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast backward has a branch for small inputs (both gradients from one call with the
    selected input the forward kept) and one for large inputs (the input selected again);
    each, for every subset of gradients asked for, equals the composable path."""
    monkeypatch.setattr(conv_mod, "_ONE_CALL", 1 << 30 if one_call else 0)
    _, nd, per_channel, kw = next(c for c in PATH_CASES if c[0] == case)
    x, _, w, b, f = _path_case(nd, per_channel, kw)
    want = {"x": "x" in needs, "w": "w" in needs, "b": "b" in needs}

    def run() -> tuple[Masked, list[Tensor | None]]:
        xs, ws, bs = (t.detach().clone().requires_grad_(want[k]) for t, k in ((x, "x"), (w, "w"), (b, "b")))
        out = f(xs, ws, bs)
        cot = torch.randn(out.data.shape, generator=torch.Generator().manual_seed(5), dtype=out.data.dtype)
        cot = torch.where(out.mask.expand(cot.shape), cot, torch.nan)
        ins = [t for t in (xs, ws, bs) if t.requires_grad]
        grads = iter(torch.autograd.grad(out.data, ins, cot))
        return out, [next(grads) if t.requires_grad else None for t in (xs, ws, bs)]

    fast, fast_grads = run()
    assert type(fast.data.grad_fn).__name__ == "_PartialConvFnBackward"
    with composable_only():
        comp, comp_grads = run()
    torch.testing.assert_close(fast.data, comp.data, rtol=1e-12, atol=1e-12)
    for a, c in zip(fast_grads, comp_grads):
        assert (a is None) == (c is None)
        if a is not None:
            assert bool(torch.isfinite(a).all())
            torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("one_call", [True, False])
def test_a_second_backward_with_retain_graph_gives_the_same_gradients(
    one_call: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small inputs keep their selected input for the first backward only; a second backward
    of the same graph (``retain_graph=True``) selects it again and gives the same gradients."""
    monkeypatch.setattr(conv_mod, "_ONE_CALL", 1 << 30 if one_call else 0)
    g = torch.Generator().manual_seed(4)
    m = torch.rand(2, 1, 6, 7, generator=g) > 0.5
    x = torch.where(m, torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64), torch.nan)
    xs = x.requires_grad_()
    layer = MNN.PartialConv2d(3, 4, 3, padding=1).double()
    out = layer(Masked(xs, m))
    assert type(out.data.grad_fn).__name__ == "_PartialConvFnBackward"
    cot = torch.where(out.mask, torch.randn(out.data.shape, generator=g, dtype=torch.float64), torch.nan)
    params = (xs, layer.weight, layer.bias)
    first = torch.autograd.grad(out.data, params, cot, retain_graph=True)
    second = torch.autograd.grad(out.data, params, cot)
    for a, b in zip(first, second):
        assert bool(torch.isfinite(a).all())
        assert torch.equal(a, b)


def test_the_common_case_shortcut_equals_the_general_path() -> None:
    """A channel-shared ``(N, 1, H, W)`` bool mask in float32/float64 takes a shortcut with fewer
    checks; the same call through the general path (a mask expanded over the channels, list
    arguments) gives the same output, mask and gradients, and bad input still raises there."""
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(2, 3, 6, 7, generator=g, dtype=dtype)
        m = torch.rand(2, 1, 6, 7, generator=g) > 0.5
        x = torch.where(m, x, torch.nan)
        w = torch.randn(4, 3, 3, 3, generator=g, dtype=dtype)
        b = torch.randn(4, generator=g, dtype=dtype)
        outs = []
        for mask, kw in (
            (m, dict(stride=(1, 1), padding=(1, 1))),
            (m.expand(2, 3, 6, 7), dict(stride=[1, 1], padding=[1, 1])),
        ):
            xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
            out = MF.partial_conv2d(xs, mask, ws, bs, **kw)
            cot = torch.where(out.mask, torch.ones_like(out.data), torch.nan)
            outs.append((out, torch.autograd.grad(out.data, (xs, ws, bs), cot)))
        (o1, g1), (o2, g2) = outs
        assert torch.equal(o1.mask, o2.mask) and torch.equal(o1.data, o2.data)
        for a, c in zip(g1, g2):
            assert torch.equal(a, c)
    with pytest.raises(ValueError, match="partial_conv2d"):
        MF.partial_conv2d(
            torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 5, dtype=torch.bool), torch.ones(2, 3, 3, 3)
        )
    with pytest.raises(ValueError, match="partial_conv2d"):
        MF.partial_conv2d(
            torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool), torch.ones(2, 2, 3, 3)
        )
    with pytest.raises(ValueError, match="partial_conv2d"):
        MF.partial_conv2d(
            torch.ones(1, 3, 2, 2), torch.ones(1, 1, 2, 2, dtype=torch.bool), torch.ones(2, 3, 3, 3)
        )
    with pytest.raises(TypeError, match="partial_conv2d"):
        MF.partial_conv2d(
            torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool), torch.ones(2, 3, 3, 3).double()
        )
    with pytest.raises(ValueError, match="partial_conv2d: expected a 4-d weight, got list"):
        MF.partial_conv2d(torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool), [[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="partial_conv2d"):  # an empty spatial dimension, padded
        MF.partial_conv2d(
            torch.ones(1, 3, 0, 4),
            torch.ones(1, 1, 0, 4, dtype=torch.bool),
            torch.ones(2, 3, 3, 3),
            padding=2,
        )


@pytest.mark.parametrize("path", ["fast", "composable"])
@pytest.mark.parametrize("transposed", [False, True])
def test_nan_targets_in_holes_give_the_gradients_of_zero_targets(path: str, transposed: bool) -> None:
    """A loss written with torch.where and NaN targets in the holes: finite, and as with 0 targets."""
    torch.manual_seed(0)
    layer: torch.nn.Module
    if transposed:
        layer = MNN.PartialConvTranspose2d(3, 4, 3, stride=2, padding=1)
    else:
        layer = MNN.PartialConv2d(3, 4, 3, padding=1)
    m = torch.rand(2, 1, 6, 6) > 0.5
    x = torch.where(m, torch.randn(2, 3, 6, 6), torch.nan)
    grads = []
    with _path(path):
        for fill in (torch.nan, 0.0):
            layer.zero_grad()
            out = layer(Masked(x, m))
            target = torch.where(out.mask, torch.randn(out.data.shape, generator=torch.Generator()), fill)
            loss = torch.where(out.mask, (out.data - target) ** 2, 0.0).sum()
            assert bool(torch.isfinite(loss))
            loss.backward()
            grads.append([p.grad.clone() for p in layer.parameters()])  # type: ignore[union-attr]
    for g_nan, g_zero in zip(*grads):
        assert bool(torch.isfinite(g_nan).all())
        torch.testing.assert_close(g_nan, g_zero)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_double_backward_both_paths_and_gradgradcheck(transposed: bool, per_channel: bool) -> None:
    g = torch.Generator().manual_seed(1)
    m = torch.rand(1, 2 if per_channel else 1, 4, 3, generator=g) > 0.4
    x = torch.where(m, torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64), 0.0)
    b = torch.randn(2, generator=g, dtype=torch.float64)
    w = torch.randn(2, 1, 2, 2, generator=g, dtype=torch.float64)  # groups=2
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    op = MF.partial_conv_transpose2d if transposed else MF.partial_conv2d
    kw = dict(stride=2, groups=2, padding_valid=True)
    kw.update(output_padding=1) if transposed else kw.update(padding=1)

    def fn(x, w, b):  # type: ignore[no-untyped-def]
        return op(x, m, w, b, **kw).data

    assert torch.autograd.gradgradcheck(fn, (x, w, b))
    with composable_only():
        assert torch.autograd.gradgradcheck(fn, (x, w, b))
    # A gradient penalty (WGAN-GP, R1) on both paths: the same second derivatives.
    penalties = []
    for path in ("fast", "composable"):
        with _path(path):
            (gx,) = torch.autograd.grad((fn(x, w, b) ** 2).sum(), x, create_graph=True)
            penalties.append(torch.autograd.grad(gx.pow(2).sum(), (w, b)))
    for a, c in zip(*penalties):
        torch.testing.assert_close(a, c)


def test_padding_valid_all_valid_equals_the_plain_convolutions_everywhere() -> None:
    g = torch.Generator().manual_seed(3)
    for nd in (1, 2, 3):
        sp = (5,) * nd
        x = torch.randn(2, 4, *sp, generator=g, dtype=torch.float64)
        ones = torch.ones(2, 1, *sp, dtype=torch.bool)
        w = torch.randn(6, 2, *(3,) * nd, generator=g, dtype=torch.float64)
        b = torch.randn(6, generator=g, dtype=torch.float64)
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
        # padding 4 > the kernel's reach: the corner windows hold only padding (the bias alone)
        for stride, pad, dil in [(1, 1, 1), (2, 4, 1), (1, 2, 2)]:
            got = CONV[nd](x, ones, w, b, stride, pad, dil, 2, padding_valid=True)
            torch.testing.assert_close(got.data, conv(x, w, b, stride, pad, dil, 2))
            assert bool(got.mask.all())
        conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
        wt = torch.randn(4, 3, *(2,) * nd, generator=g, dtype=torch.float64)
        # stride 3 with a 2-tap kernel leaves gaps, output_padding adds rows no tap reaches
        for stride, pad, dil, opad in [(2, 0, 1, 1), (3, 0, 1, 2), (3, 1, 2, 1), (1, 1, 3, 0)]:
            got = CONV_T[nd](x, ones, wt, b, stride, pad, opad, 2, dil, padding_valid=True)
            torch.testing.assert_close(got.data, conv_t(x, wt, b, stride, pad, opad, 2, dil))
            assert bool(got.mask.all())


def test_asymmetric_padding_pairs_fold_an_explicit_pad() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    ones = torch.ones(1, 1, 1, 1, dtype=torch.bool)
    got = MF.partial_conv2d(x, ones, w, b, 2, ((0, 1), (1, 1)), padding_valid=True)
    torch.testing.assert_close(got.data, F.conv2d(F.pad(x, [1, 1, 0, 1]), w, b, 2))
    # The same padding through F.pad marked masked is missing data, rescaled like a hole.
    m = torch.rand(2, 1, 6, 7, generator=g) > 0.3
    pairs = MF.partial_conv2d(x, m, w, b, 2, ((0, 1), (1, 1)))
    padded = MF.partial_conv2d(F.pad(x, [1, 1, 0, 1]), F.pad(m, [1, 1, 0, 1]), w, b, 2)
    torch.testing.assert_close(pairs.data, padded.data)
    assert torch.equal(pairs.mask, padded.mask)


@pytest.mark.parametrize("padding_valid", [False, True])
def test_fully_masked_sample_gives_zeros_and_false_in_every_mode(padding_valid: bool) -> None:
    x = torch.full((2, 2, 5, 5), torch.nan)
    m = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    m[1, :, 2, 2] = True  # sample 1 has one valid pixel
    x[1, :, 2, 2] = 1.0
    w, b = torch.ones(3, 2, 2, 2), torch.full((3,), 0.5)
    outs = [
        MF.partial_conv2d(x, m, w, b, 2, 3, padding_valid=padding_valid),  # padding-only windows
        MF.partial_conv_transpose2d(x, m, w.transpose(0, 1), b, 3, 0, 2, padding_valid=padding_valid),
    ]
    for out in outs:
        assert not bool(out.mask[0].any()) and bool((out.data[0] == 0).all())
        # Sample 1: with padding_valid, the windows that reach no input hold the bias and are valid.
        empty = out.mask[1] & (out.data[1] == 0.5)
        assert bool(empty.any()) == padding_valid


def test_vmap_and_per_sample_gradients_equal_a_loop() -> None:
    torch.manual_seed(0)
    for layer in (
        MNN.PartialConv2d(3, 4, 3, stride=2, padding=1, padding_valid=True),
        MNN.PartialConvTranspose2d(3, 2, 3, stride=2, output_padding=1, padding_valid=True),
    ):
        m = torch.rand(4, 3, 5, 6) > 0.4
        x = torch.where(m, torch.randn(4, 3, 5, 6), torch.nan)

        def one(xi, mi, layer=layer):  # type: ignore[no-untyped-def]
            o = layer(Masked(xi.unsqueeze(0), mi.unsqueeze(0)))
            return o.data[0], o.mask[0]

        data, mask = torch.func.vmap(one)(x, m)
        ref = layer(Masked(x, m))
        torch.testing.assert_close(data, ref.data)
        assert torch.equal(mask, ref.mask.expand(mask.shape))
        params = {k: v.detach() for k, v in layer.named_parameters()}
        target = torch.randn(ref.data.shape)

        def loss(p, xi, mi, ti, layer=layer):  # type: ignore[no-untyped-def]
            o = torch.func.functional_call(layer, p, (Masked(xi.unsqueeze(0), mi.unsqueeze(0)),))
            return torch.where(o.mask, (o.data - ti.unsqueeze(0)) ** 2, 0.0).sum()

        per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0, 0))(params, x, m, target)
        for i in range(4):
            layer.zero_grad()
            loss(dict(layer.named_parameters()), x[i], m[i], target[i]).backward()
            for k, p in layer.named_parameters():
                torch.testing.assert_close(per_sample[k][i], p.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", ["fast", "composable"])
def test_autocast_runs_the_convolution_like_nn_conv(path: str) -> None:
    torch.manual_seed(0)
    m = torch.rand(2, 8, 6, 6) > 0.5
    x = torch.where(m, torch.randn(2, 8, 6, 6), torch.nan)
    layers = [
        (torch.nn.Conv2d(8, 4, 3, padding=1), MNN.PartialConv2d(8, 4, 3, padding=1, padding_valid=True)),
        (torch.nn.ConvTranspose2d(8, 4, 3, 2), MNN.PartialConvTranspose2d(8, 4, 3, 2, padding_valid=True)),
    ]
    for plain, masked in layers:
        masked.load_state_dict(plain.state_dict())
        with _path(path), torch.autocast("cpu", dtype=torch.bfloat16):
            out = masked(Masked(x, m))
            ref = plain(torch.where(m, x, 0.0))
            full = masked(Masked(torch.nan_to_num(x), torch.ones(1, 1, 1, 1, dtype=torch.bool)))
            assert out.data.dtype == ref.dtype == torch.bfloat16
            torch.testing.assert_close(full.data, plain(torch.nan_to_num(x)), rtol=0.02, atol=0.02)
            out.data.float().sum().backward()
        with _path(path):
            ref32 = masked(Masked(x, m))  # counts and rescale in float32: close to the float32 result
        torch.testing.assert_close(out.data.float(), ref32.data, rtol=0.03, atol=0.05)
        assert torch.equal(out.mask, ref32.mask)
        assert masked.weight.grad is not None and masked.weight.grad.dtype == torch.float32
        # float64 data is left alone by autocast, as by nn.Conv2d
        with _path(path), torch.autocast("cpu", dtype=torch.bfloat16):
            assert masked.double()(Masked(x.double(), m)).data.dtype == torch.float64
        masked.float()


@pytest.mark.parametrize("path", ["fast", "composable"])
def test_channels_last_stays_channels_last(path: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 7).contiguous(memory_format=torch.channels_last)
    cases = [
        (torch.nn.Conv2d(4, 6, 3, padding=1), MNN.PartialConv2d(4, 6, 3, padding=1), 1),
        (torch.nn.Conv2d(4, 6, 3, groups=2), MNN.PartialConv2d(4, 6, 3, groups=2), 4),
        (torch.nn.ConvTranspose2d(4, 2, 2, 2), MNN.PartialConvTranspose2d(4, 2, 2, 2), 1),
    ]
    for plain, masked, mc in cases:
        masked.load_state_dict(plain.state_dict())
        m = torch.rand(2, mc, 6, 7) > 0.3
        with _path(path):
            out = masked(Masked(x, m)).data
        cl = torch.channels_last
        assert out.is_contiguous(memory_format=cl) == plain(x).is_contiguous(memory_format=cl) is True
        torch.testing.assert_close(out, masked(Masked(x.contiguous(), m)).data)


class _Net(torch.nn.Module):
    """A small masked CNN with every kind of window: padded, strided padding_valid, transposed gaps."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = MNN.PartialConv2d(3, 4, 3, padding=1)
        self.c2 = MNN.PartialConv2d(4, 4, 3, stride=2, padding=1, padding_valid=True)
        self.t = MNN.PartialConvTranspose2d(4, 2, 3, 2, padding=1, output_padding=1, padding_valid=True)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.t(self.c2(self.c1(Masked(x, m))))
        return y.data, y.mask


def _net_input(n: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n, 1, h, w, generator=g) > 0.4
    return torch.where(m, torch.randn(n, 3, h, w, generator=g), torch.nan), m


@pytest.mark.compile
def test_compile_dynamic_two_sizes_equals_eager_and_a_new_mask_does_not_recompile() -> None:
    from torch._dynamo.testing import CompileCounterWithBackend

    torch.manual_seed(0)
    net = _Net()
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(net, backend=counter, dynamic=True)
    torch._dynamo.reset()
    for i, (n, h, w) in enumerate([(2, 8, 10), (2, 8, 10), (3, 12, 6)]):
        x, m = _net_input(n, h, w, seed=i)  # a new mask (and data) every call
        frames = counter.frame_count
        outs = []
        for fn in (compiled, net):
            net.zero_grad()
            data, mask = fn(x, m)
            torch.where(mask, data, 0.0).pow(2).sum().backward()
            outs.append((data.detach(), mask, [p.grad.clone() for p in net.parameters()]))  # type: ignore[union-attr]
        (cd, cm, cg), (ed, em, eg) = outs
        assert torch.equal(cm, em)
        torch.testing.assert_close(cd, ed, rtol=1e-4, atol=1e-5)
        for a, b in zip(cg, eg):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        if i == 1:
            assert counter.frame_count == frames, "a new mask of the same shape recompiled"


def test_export_reruns_on_another_mask_and_data() -> None:
    torch.manual_seed(0)
    net = _Net().eval()
    ep = torch.export.export(net, _net_input(2, 8, 10, seed=0))
    x, m = _net_input(2, 8, 10, seed=1)
    data, mask = ep.module()(x, m)
    ref_data, ref_mask = net(x, m)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(data, ref_data)
    targets = " ".join(str(n.target) for n in ep.graph.nodes if n.op == "call_function")
    assert "bitwise" not in targets and "PartialConvFn" not in targets


def test_onnx_export_matches_onnxruntime() -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = _Net().eval()
    program = torch.onnx.export(net, _net_input(2, 8, 10, seed=0), dynamo=True, verbose=False)
    assert program is not None
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    x, m = _net_input(2, 8, 10, seed=1)
    names = [i.name for i in session.get_inputs()]
    data, mask = session.run(None, {names[0]: x.numpy(), names[1]: m.numpy()})
    with torch.no_grad():
        ref_data, ref_mask = net(x, m)
    assert (mask == ref_mask.numpy()).all()
    np.testing.assert_allclose(data, ref_data.numpy(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- CUDA (skipped without)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@CUDA
def test_cuda_equals_cpu() -> None:
    """The composable path on CUDA against the eager fast path on the CPU, every path case."""
    for _, nd, per_channel, kw in PATH_CASES:
        x, m, w, b, f = _path_case(nd, per_channel, kw)
        cpu, cpu_grads = _run_path(f, x, w, b)
        mc, kw2 = m.cuda(), dict(kw)
        fn = CONV_T[nd] if kw2.pop("transposed", False) else CONV[nd]
        dev, dev_grads = _run_path(lambda x, w, b: fn(x, mc, w, b, **kw2), x.cuda(), w.cuda(), b.cuda())  # noqa: B023
        assert torch.equal(dev.mask.cpu(), cpu.mask)
        torch.testing.assert_close(dev.data.cpu(), cpu.data, rtol=1e-9, atol=1e-9)
        for a, c in zip(dev_grads, cpu_grads):
            torch.testing.assert_close(a.cpu(), c, rtol=1e-9, atol=1e-9)


@CUDA
def test_cuda_autocast_float16_and_channels_last_like_nn_conv() -> None:
    torch.manual_seed(0)
    m = (torch.rand(2, 1, 9, 9) > 0.4).cuda()
    x = torch.where(m, torch.randn(2, 8, 9, 9).cuda(), torch.nan)
    for plain, masked in [
        (torch.nn.Conv2d(8, 4, 3, padding=1), MNN.PartialConv2d(8, 4, 3, padding=1, padding_valid=True)),
        (torch.nn.ConvTranspose2d(8, 4, 3, 2), MNN.PartialConvTranspose2d(8, 4, 3, 2, padding_valid=True)),
    ]:
        plain, masked = plain.cuda(), masked.cuda()
        masked.load_state_dict(plain.state_dict())
        with torch.autocast("cuda", dtype=torch.float16):
            out = masked(Masked(x, m))
            assert out.data.dtype == plain(torch.nan_to_num(x)).dtype == torch.float16
            out.data.float().sum().backward()
        ref = masked(Masked(x, m))
        torch.testing.assert_close(out.data.float(), ref.data, rtol=0.01, atol=0.02)
        assert masked.weight.grad is not None and bool(torch.isfinite(masked.weight.grad).all())
        xc = torch.nan_to_num(x).contiguous(memory_format=torch.channels_last)
        cl = torch.channels_last
        assert masked(Masked(xc, m)).data.is_contiguous(memory_format=cl) == plain(xc).is_contiguous(
            memory_format=cl
        )
