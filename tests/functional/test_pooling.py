"""Masked pooling against naive float64 loops and plain torch."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import masknn.functional as MF
from masknn.functional._select import composable_only

MAX = {1: MF.masked_max_pool1d, 2: MF.masked_max_pool2d, 3: MF.masked_max_pool3d}
AVG = {1: MF.masked_avg_pool1d, 2: MF.masked_avg_pool2d, 3: MF.masked_avg_pool3d}
AAVG = {1: MF.masked_adaptive_avg_pool1d, 2: MF.masked_adaptive_avg_pool2d, 3: MF.masked_adaptive_avg_pool3d}
AMAX = {1: MF.masked_adaptive_max_pool1d, 2: MF.masked_adaptive_max_pool2d, 3: MF.masked_adaptive_max_pool3d}


def _out_len(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    n = (-(-span // s) if ceil else span // s) + 1
    if ceil and (n - 1) * s >= size + p:  # torch: the last window must start inside the input or left padding
        n -= 1
    return n


def naive_pool(x, m, k, s, p, d, ceil, reduce):  # type: ignore[no-untyped-def]
    x, m = x.double().numpy(), m.numpy()
    n_, c = x.shape[:2]
    sp = x.shape[2:]
    nd = len(sp)
    osz = [_out_len(sp[i], k, s, p, d, ceil) for i in range(nd)]
    out = np.zeros((n_, c, *osz))
    valid = np.zeros((n_, c, *osz), dtype=bool)
    for n, ch, o in itertools.product(range(n_), range(c), itertools.product(*[range(v) for v in osz])):
        vals = []
        for kk in itertools.product(range(k), repeat=nd):
            pos = tuple(o[i] * s - p + kk[i] * d for i in range(nd))
            if all(0 <= pos[i] < sp[i] for i in range(nd)) and m[(n, ch if m.shape[1] > 1 else 0, *pos)]:
                vals.append(x[(n, ch, *pos)])
        if vals:
            out[(n, ch, *o)] = reduce(vals)
            valid[(n, ch, *o)] = True
    return out, valid


def naive_adaptive(x, m, osz, reduce):  # type: ignore[no-untyped-def]
    x, m = x.double().numpy(), m.numpy()
    n_, c = x.shape[:2]
    sp = x.shape[2:]
    out = np.zeros((n_, c, *osz))
    valid = np.zeros((n_, c, *osz), dtype=bool)
    for n, ch, o in itertools.product(range(n_), range(c), itertools.product(*[range(v) for v in osz])):
        ranges = [
            range(math.floor(o[i] * sp[i] / osz[i]), math.ceil((o[i] + 1) * sp[i] / osz[i]))
            for i in range(len(sp))
        ]
        vals = [
            x[(n, ch, *pos)]
            for pos in itertools.product(*ranges)
            if m[(n, ch if m.shape[1] > 1 else 0, *pos)]
        ]
        if vals:
            out[(n, ch, *o)] = reduce(vals)
            valid[(n, ch, *o)] = True
    return out, valid


def _check(got, ref) -> None:  # type: ignore[no-untyped-def]
    out, valid = ref
    assert torch.equal(got.mask.expand(valid.shape), torch.from_numpy(valid))
    torch.testing.assert_close(got.data, torch.from_numpy(out), rtol=1e-12, atol=1e-12)


def _inputs(nd: int, per_channel: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sp = (7,) * nd if nd < 3 else (5, 4, 5)
    m = torch.rand(2, 3 if per_channel else 1, *sp, generator=g) > 0.6
    m[1] = False
    x = torch.where(m, torch.randn(2, 3, *sp, generator=g, dtype=torch.float64), torch.nan)
    return x, m


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("per_channel", [False, True])
def test_max_and_avg_pool_match_naive_loop(nd: int, per_channel: bool) -> None:
    x, m = _inputs(nd, per_channel, nd)
    for k, s, p, d, ceil in [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 2, False)]:
        _check(MAX[nd](x, m, k, s, p, d, ceil), naive_pool(x, m, k, s, p, d, ceil, max))
        if d == 1:
            _check(AVG[nd](x, m, k, s, p, ceil), naive_pool(x, m, k, s, p, 1, ceil, np.mean))


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("per_channel", [False, True])
def test_adaptive_pools_match_naive_loop(nd: int, per_channel: bool) -> None:
    x, m = _inputs(nd, per_channel, 10 + nd)
    osz = [3, 2, 4][:nd]
    _check(AAVG[nd](x, m, osz), naive_adaptive(x, m, osz, np.mean))
    _check(AMAX[nd](x, m, osz), naive_adaptive(x, m, osz, max))


def test_global_pools() -> None:
    x, m = _inputs(2, False)
    avg, mx = MF.masked_global_avg_pool(x, m), MF.masked_global_max_pool(x, m)
    assert avg.data.shape == (2, 3) and avg.mask.shape == (2, 3)
    for n, c in itertools.product(range(2), range(3)):
        vals = x[n, c][m[n, 0]]
        if vals.numel():
            torch.testing.assert_close(avg.data[n, c], vals.mean())
            torch.testing.assert_close(mx.data[n, c], vals.max())
        else:
            assert not avg.mask[n, c] and avg.data[n, c] == 0 and mx.data[n, c] == 0


def test_all_valid_matches_plain_pools() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    ones = torch.ones(2, 1, 9, 8, dtype=torch.bool)
    torch.testing.assert_close(MF.masked_max_pool2d(x, ones, 3, 2, 1).data, F.max_pool2d(x, 3, 2, 1))
    torch.testing.assert_close(
        MF.masked_avg_pool2d(x, ones, 3, 2, 1).data, F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    )
    torch.testing.assert_close(
        MF.masked_adaptive_avg_pool2d(x, ones, (4, 3)).data, F.adaptive_avg_pool2d(x, (4, 3))
    )
    torch.testing.assert_close(
        MF.masked_adaptive_max_pool2d(x, ones, (4, 3)).data, F.adaptive_max_pool2d(x, (4, 3))
    )
    torch.testing.assert_close(MF.masked_global_avg_pool(x, ones).data, x.mean((2, 3)))


def test_gradcheck_float64() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    m = torch.rand(2, 1, 6, 6) > 0.4
    for fn in (
        lambda x: MF.masked_avg_pool2d(x, m, 3, 2, 1).data,
        lambda x: MF.masked_max_pool2d(x, m, 3, 2, 1).data,
        lambda x: MF.masked_adaptive_avg_pool2d(x, m, 4).data,
        lambda x: MF.masked_adaptive_max_pool2d(x, m, 2).data,
    ):
        assert torch.autograd.gradcheck(fn, (x,))


def test_bad_inputs() -> None:
    with pytest.raises(
        ValueError, match=r"masked_max_pool2d: mask shape \(2, 1, 3, 3\) does not fit data shape"
    ):
        MF.masked_max_pool2d(torch.randn(2, 3, 4, 4), torch.ones(2, 1, 3, 3, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="masked_avg_pool2d: expected 4-d data"):
        MF.masked_avg_pool2d(torch.randn(3, 4, 4), torch.ones(3, 4, 4, dtype=torch.bool), 2)
    with pytest.raises(
        ValueError, match="masked_adaptive_avg_pool2d: expected output_size as an int or 2 sizes"
    ):
        MF.masked_adaptive_avg_pool2d(torch.randn(1, 3, 4, 4), torch.ones(1, 1, 4, 4), (1, 2, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_window_sums_do_not_overflow(dtype: torch.dtype) -> None:
    # Regression: the window sum of masked_avg_pool2d was taken in float16 (1024 values of
    # 1000 gave Inf; bfloat16 gave 996), and masked_adaptive_avg_pool2d's 1 / valid fraction
    # overflowed float16 for one valid pixel in a 512 x 512 window (Inf instead of 3).
    x = torch.full((1, 2, 32, 32), 1000.0, dtype=dtype)
    m = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.2
    out = MF.masked_avg_pool2d(x, m, 32)
    assert torch.equal(out.data, torch.full_like(out.data, 1000.0))
    big = torch.full((1, 1, 512, 512), 3.0, dtype=dtype)
    one = torch.zeros(1, 1, 512, 512, dtype=torch.bool)
    one[0, 0, 5, 5] = True
    out = MF.masked_adaptive_avg_pool2d(big, one, 1)
    assert out.data.item() == 3.0 and bool(out.mask.all())


@pytest.mark.parametrize("path", ["eager", "composable"])
@pytest.mark.parametrize("op", ["avg", "adaptive_avg", "max", "global_avg", "global_max"])
def test_nan_cotangent_at_an_empty_window_reaches_no_gradient(op: str, path: str) -> None:
    x = torch.tensor([[[[1.0, 2.0, float("nan"), float("inf")]]]], requires_grad=True)
    m = torch.tensor([[[[True, True, False, False]]]])
    fns = {
        "avg": lambda: MF.masked_avg_pool2d(x, m, (1, 2)),
        "adaptive_avg": lambda: MF.masked_adaptive_avg_pool2d(x, m, (1, 2)),
        "max": lambda: MF.masked_max_pool2d(x, m, (1, 2)),
        "global_avg": lambda: MF.masked_global_avg_pool(x[..., 2:], m[..., 2:]),
        "global_max": lambda: MF.masked_global_max_pool(x[..., 2:], m[..., 2:]),
    }
    with composable_only() if path == "composable" else torch.enable_grad():
        out = fns[op]()
        valid = out.mask.expand(out.data.shape)
        cot = torch.where(valid, torch.ones_like(out.data), torch.nan)
        (g,) = torch.autograd.grad(out.data, x, cot)
    assert bool(torch.isfinite(g).all()) and g[..., 2:].eq(0).all()
    assert out.data[~valid].eq(0).all()
