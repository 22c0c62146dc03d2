"""Partial convolution against naive float64 loops, the NVIDIA reference vectors and plain torch."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import masknn.functional as MF
from tests.conftest import reference_dir

CONV = {1: MF.partial_conv1d, 2: MF.partial_conv2d, 3: MF.partial_conv3d}
CONV_T = {1: MF.partial_conv_transpose1d, 2: MF.partial_conv_transpose2d, 3: MF.partial_conv_transpose3d}


def naive_pconv(x, m, w, b, stride, pad, dil, groups, padding_valid):  # type: ignore[no-untyped-def]
    """Liu et al. partial convolution, one output at a time (numpy float64)."""
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
            acc, cnt = 0.0, 0
            for cl in range(cg):
                ci = g * cg + cl
                for kk in itertools.product(*[range(s) for s in k]):
                    pos = tuple(o[i] * stride - pad + kk[i] * dil for i in range(nd))
                    inside = all(0 <= pos[i] < sp[i] for i in range(nd))
                    if inside:
                        ok = bool(m[(n, ci if per_channel else 0, *pos)])
                        if ok:
                            acc += w[(co, cl, *kk)] * x[(n, ci, *pos)]
                    else:
                        ok = padding_valid
                    if ok and (per_channel or cl == 0):
                        cnt += 1
            if cnt:
                out[(n, co, *o)] = acc * window / cnt + (0.0 if b is None else float(b[co]))
                valid[(n, co, *o)] = True
    return out, valid


def naive_pconv_t(x, m, w, b, stride, pad, dil, groups, padding_valid):  # type: ignore[no-untyped-def]
    """Partial transposed convolution by scattering (numpy float64)."""
    x, m, w = x.double().numpy(), m.numpy(), w.double().numpy()
    n_, c = x.shape[:2]
    sp = x.shape[2:]
    nd = len(sp)
    cg, cog = c // groups, w.shape[1]
    co_ = cog * groups
    k = w.shape[2:]
    per_channel = m.shape[1] > 1
    per = cg if per_channel else 1
    osz = [(sp[i] - 1) * stride - 2 * pad + dil * (k[i] - 1) + 1 for i in range(nd)]
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
    if padding_valid:
        window = full
    else:
        window = np.full(osz, float(per))
        for d in range(nd):
            taps = np.array(
                [sum((o + pad - t * dil) % stride == 0 for t in range(k[d])) for o in range(osz[d])]
            )
            shape = [1] * nd
            shape[d] = -1
            window = window * taps.reshape(shape)
    valid = cnt > 0
    bias = 0.0 if b is None else b.double().numpy().reshape((1, -1) + (1,) * nd)
    out = np.where(valid, acc * window / np.maximum(cnt, 1) + bias, 0.0)
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
    for stride, pad, dil in [(1, 0, 1), (2, 1, 1), (2, 0, 2)]:
        got = CONV_T[nd](x, m, w, b, stride, pad, 0, 2, dil, padding_valid)
        _check(got, naive_pconv_t(x, m, w, b, stride, pad, dil, 2, padding_valid))


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
