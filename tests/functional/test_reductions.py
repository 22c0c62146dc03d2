"""Masked reductions against a naive float64 computation on the valid subset."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn import Masked
from masknn.functional import (
    masked_log_softmax,
    masked_logsumexp,
    masked_max,
    masked_mean,
    masked_min,
    masked_softmax,
    masked_std,
    masked_sum,
    masked_var,
)


@st.composite
def masked_arrays(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    x = torch.tensor(
        np.random.default_rng(draw(st.integers(0, 2**31))).normal(size=shape), dtype=torch.float32
    )
    mask_shape = tuple(s if draw(st.booleans()) else 1 for s in shape)
    rate = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    m = torch.tensor(np.random.default_rng(draw(st.integers(0, 2**31))).random(mask_shape) >= rate)
    dims = tuple(i for i in range(ndim) if draw(st.booleans()))
    if not dims:
        dims = (draw(st.integers(0, ndim - 1)),)
    return x, m, dims


def _naive(
    x: torch.Tensor, m: torch.Tensor, dims: tuple[int, ...], fn: Callable[[list[float]], float | None]
) -> tuple[np.ndarray, np.ndarray]:
    xd = x.double().numpy()
    md = m.expand(x.shape).numpy()
    keep = [i for i in range(x.dim()) if i not in dims]
    out_shape = [x.shape[i] for i in keep]
    out = np.zeros(out_shape)
    valid = np.zeros(out_shape, dtype=bool)
    for idx in itertools.product(*[range(s) for s in out_shape]):
        sel: list[object] = [slice(None)] * x.dim()
        for k, i in zip(keep, idx):
            sel[k] = i
        vals = xd[tuple(sel)][md[tuple(sel)]].tolist()
        r = fn(vals)
        if r is not None:
            out[idx] = r
            valid[idx] = True
    return out, valid


def _var(vals: list[float], correction: int = 1) -> float | None:
    if len(vals) <= correction:
        return None
    mu = sum(vals) / len(vals)
    return sum((v - mu) ** 2 for v in vals) / (len(vals) - correction)


NAIVE: dict[str, tuple[Callable[..., object], Callable[[list[float]], float | None]]] = {
    "sum": (masked_sum, lambda v: sum(v) if v else None),
    "mean": (masked_mean, lambda v: sum(v) / len(v) if v else None),
    "var": (masked_var, _var),
    "std": (masked_std, lambda v: math.sqrt(r) if (r := _var(v)) is not None else None),
    "max": (masked_max, lambda v: max(v) if v else None),
    "min": (masked_min, lambda v: min(v) if v else None),
    "logsumexp": (masked_logsumexp, lambda v: math.log(sum(math.exp(a) for a in v)) if v else None),
}


@pytest.mark.parametrize("name", list(NAIVE))
@settings(max_examples=40, deadline=None)
@given(case=masked_arrays())
def test_reduction_matches_naive_float64(
    name: str, case: tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]
) -> None:
    x, m, dims = case
    op, naive = NAIVE[name]
    # Masked positions hold NaN: they must not matter.
    xn = torch.where(m, x, torch.tensor(math.nan))
    got = op(xn, m, dim=dims)
    want, valid = _naive(x, m, dims, naive)
    assert got.mask.numpy().tolist() == valid.tolist()
    np.testing.assert_allclose(got.data.double().numpy(), want, rtol=1e-5, atol=1e-5)
    assert bool(torch.isfinite(got.data).all())


@settings(max_examples=40, deadline=None)
@given(case=masked_arrays())
def test_softmax_matches_naive(case: tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]) -> None:
    x, m, dims = case
    dim = dims[0]
    xn = torch.where(m, x, torch.tensor(math.inf))
    got = masked_softmax(xn, m, dim=dim)
    got_log = masked_log_softmax(xn, m, dim=dim)
    full = m.expand(x.shape)
    xd = x.double()
    ref = torch.where(full, xd, torch.tensor(-math.inf, dtype=torch.float64))
    any_valid = full.any(dim, keepdim=True)
    ref_p = torch.where(any_valid, torch.softmax(torch.where(any_valid, ref, 0.0), dim), 0.0)
    ref_p = torch.where(full, ref_p, 0.0)
    np.testing.assert_allclose(got.data.double().numpy(), ref_p.numpy(), rtol=1e-5, atol=1e-6)
    ref_l = torch.where(full, torch.log_softmax(torch.where(any_valid, ref, 0.0), dim), 0.0)
    np.testing.assert_allclose(got_log.data.double().numpy(), ref_l.numpy(), rtol=1e-5, atol=1e-5)
    assert torch.equal(got.full_mask(), full)


def test_empty_reduction_is_zero_not_nan() -> None:
    x = torch.full((2, 3), math.nan)
    m = torch.zeros(2, 3, dtype=torch.bool)
    for op in (masked_sum, masked_mean, masked_var, masked_std, masked_max, masked_min, masked_logsumexp):
        r = op(x, m, dim=1)
        assert r.data.tolist() == [0.0, 0.0] and r.mask.tolist() == [False, False]
    assert masked_softmax(x, m, dim=1).data.eq(0).all()
    assert masked_mean(x, m).data.item() == 0.0


def test_gradients_zero_at_masked_and_finite() -> None:
    x = torch.tensor([[1.0, math.nan, 3.0], [math.inf, math.inf, math.inf]], requires_grad=True)
    m = torch.tensor([[True, False, True], [False, False, False]])
    total = (
        sum(
            op(x, m, dim=1).data.sum()
            for op in (masked_sum, masked_mean, masked_var, masked_std, masked_max, masked_logsumexp)
        )
        + masked_softmax(x, m, 1).data[:, 0].sum()
        + masked_log_softmax(x, m, 1).data[:, 0].sum()
    )
    assert isinstance(total, torch.Tensor)
    total.backward()
    assert x.grad is not None
    assert bool(torch.isfinite(x.grad).all())
    assert x.grad[~m].eq(0).all()


def test_std_gradient_finite_at_zero_variance() -> None:
    x = torch.tensor([[2.0, 2.0, 2.0]], requires_grad=True)
    masked_std(x, torch.ones(1, 3, dtype=torch.bool), dim=1).data.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_half_precision_accumulates_in_float32() -> None:
    x = torch.full((1, 70000), 1.0, dtype=torch.float16)
    r = masked_sum(x, torch.ones_like(x, dtype=torch.bool), dim=1)
    # float16 cannot hold 70000: float32 accumulation overflows only at the final cast.
    assert masked_mean(x, torch.ones_like(x, dtype=torch.bool), dim=1).data.item() == 1.0
    assert r.data.dtype == torch.float16


def test_keepdim_and_negative_dims() -> None:
    x = torch.randn(2, 3, 4)
    m = torch.rand(2, 3, 4) > 0.3
    a = masked_mean(x, m, dim=-1, keepdim=True)
    assert a.data.shape == (2, 3, 1) and a.mask.shape == (2, 3, 1)
    b = masked_var(x, m, dim=(0, 2), keepdim=False)
    assert b.data.shape == (3,)
    with pytest.raises(ValueError, match="masked_mean: dim 3 is out of range"):
        masked_mean(x, m, dim=3)


def test_bad_mask_names_the_op() -> None:
    with pytest.raises(ValueError, match=r"masked_sum: mask shape \(3,\) does not fit data shape \(2, 3\)"):
        masked_sum(torch.zeros(2, 3), torch.ones(3, dtype=torch.bool))


# ------------------------------------------------------------------- issue 11: dim=(), integers, T=0
REDUCE_ALL = {
    "sum": (masked_sum, NAIVE["sum"][1]),
    "mean": (masked_mean, NAIVE["mean"][1]),
    "var": (masked_var, _var),
    "std": NAIVE["std"],
    "max": NAIVE["max"],
    "min": NAIVE["min"],
    "logsumexp": NAIVE["logsumexp"],
}


@pytest.mark.parametrize("name", list(REDUCE_ALL))
@settings(max_examples=25, deadline=None)
@given(case=masked_arrays(), keepdim=st.booleans())
def test_empty_dim_tuple_reduces_every_dimension_as_torch(
    name: str, case: tuple[torch.Tensor, torch.Tensor, tuple[int, ...]], keepdim: bool
) -> None:
    # torch.sum(x, dim=()) reduces over every dimension; so must the masked reductions
    # (they returned the input unchanged, and var/std zeros).
    x, m, _ = case
    op, naive = REDUCE_ALL[name]
    xn = torch.where(m, x, torch.tensor(math.nan))
    got = op(xn, m, dim=(), keepdim=keepdim)
    want, valid = _naive(x, m, tuple(range(x.dim())), naive)
    assert got.data.shape == torch.sum(x, dim=(), keepdim=keepdim).shape
    assert got.mask.reshape(()).item() == bool(valid)
    np.testing.assert_allclose(got.data.double().reshape(()).numpy(), want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.data, op(xn, m, dim=None, keepdim=keepdim).data)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=12),
    keep=st.lists(st.booleans(), min_size=12, max_size=12),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.int16]),
)
def test_integer_sums_are_exact_and_int64(values: list[int], keep: list[bool], dtype: torch.dtype) -> None:
    info = torch.iinfo(dtype)
    values = [min(max(v, info.min // 16), info.max // 16) for v in values]
    x = torch.tensor(values, dtype=dtype)
    m = torch.tensor(keep[: len(values)])
    got = masked_sum(x, m)
    exact = sum(v for v, k in zip(values, keep) if k)
    assert got.data.dtype == torch.sum(x).dtype == torch.int64
    assert int(got.data) == exact  # float32 accumulation lost everything above 2**24
    mean = masked_mean(x, m, dtype=torch.float64)
    n = sum(keep[: len(values)])
    assert mean.data.dtype == torch.float64
    assert float(mean.data) == (exact / n if n else 0.0)


def test_integer_sum_of_two_pow_24_plus_one_is_exact() -> None:
    x = torch.tensor([[2**24 + 1, 5]], dtype=torch.int64)
    m = torch.tensor([[True, False]])
    assert masked_sum(x, m, dim=1).data.tolist() == [2**24 + 1]
    assert masked_mean(x, m, dim=1, dtype=torch.float64).data.tolist() == [2**24 + 1]
    with pytest.raises(TypeError, match=r"masked_mean: integer data \(torch.int64\) has no mean dtype"):
        masked_mean(x, m, dim=1)
    half = torch.full((1, 70000), 1.0, dtype=torch.float16)
    assert (
        masked_sum(half, torch.ones(1, 1, dtype=torch.bool), dim=1, dtype=torch.float32).data.item() == 70000
    )


@pytest.mark.parametrize(
    "op", [masked_max, masked_min, masked_sum, masked_mean, masked_var, masked_logsumexp]
)
@settings(max_examples=15, deadline=None)
@given(n=st.integers(0, 3), f=st.integers(1, 3), shared=st.booleans(), keepdim=st.booleans())
def test_reduction_over_an_empty_dimension_gives_zeros_and_a_false_mask(
    op: Callable[..., object], n: int, f: int, shared: bool, keepdim: bool
) -> None:
    x = torch.zeros(n, 0, f)
    m = torch.zeros(n, 0, 1 if shared else f, dtype=torch.bool)
    got = op(x, m, dim=1, keepdim=keepdim)
    shape = (n, 1, f) if keepdim else (n, f)
    assert isinstance(got, Masked)
    assert got.data.shape == shape and got.mask.shape == shape
    assert bool((got.data == 0).all()) and not bool(got.mask.any())
