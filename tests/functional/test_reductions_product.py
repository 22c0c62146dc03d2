"""The masked sum/mean as a batched matrix-vector product (the eager-CPU fast path).

Where the mask is shared along dimensions next to the reduced ones, ``masked_sum`` and
``masked_mean`` multiply the data by the mask as floats (``torch.bmm``) instead of selecting
it, and fall back to the select when a masked value is NaN or Inf. The product sums in
another order than ``x.sum``: results equal the select path (``composable_only()``) within
float rounding, not bit for bit; masks, NaN and Inf positions are equal exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn.functional import masked_mean, masked_sum
from masknn.functional import reductions as R
from masknn.functional._select import composable_only

# (data shape, mask shape, dims): layouts the product takes, and where it takes none.
LAYOUTS = [
    ((3, 4, 5, 6), (3, 1, 5, 6), (2, 3)),  # images, one mask for all channels
    ((3, 4, 5, 6), (3, 1, 5, 6), (1, 2, 3)),  # ... and the channels summed from the product
    ((3, 4, 5, 6), (3, 1, 5, 6), (0, 1, 2, 3)),  # everything
    ((3, 4, 5, 6), (3, 1, 5, 6), (0, 2, 3)),
    ((3, 4, 5, 6), (1, 1, 5, 6), (2, 3)),  # one mask for the whole batch
    ((3, 9, 4), (3, 9, 1), (1,)),  # sequences (N, T, F), mask (N, T, 1), over time
    ((3, 9, 4), (3, 9, 1), (0, 1)),
    ((3, 9, 4), (3, 9, 1), (1, 2)),
    ((2, 3, 4, 8), (2, 3, 4, 1), (1, 2)),  # (N, T, H, F)-like: the mask shared along the last
]
NO_PRODUCT = [
    ((3, 4, 5, 6), (3, 4, 5, 6), (2, 3)),  # per-channel mask: nothing is shared
    ((3, 4, 5, 6), (3, 1, 5, 6), (1,)),  # the shared dimension is the reduced one
    ((3, 4, 2, 2), (3, 1, 2, 2), (2, 3)),  # rows of 4 elements: too short to pay
    ((3, 4, 5, 6), (1, 4, 5, 6), (2, 3)),  # shared along the batch only, far from the reduced dims
]


@pytest.mark.parametrize(("xs", "ms", "dims"), LAYOUTS)
def test_plan_covers_the_shared_mask_layouts(
    xs: tuple[int, ...], ms: tuple[int, ...], dims: tuple[int, ...]
) -> None:
    plan = R._plan(xs, ms, dims)
    assert plan is not None
    assert plan.p * plan.q * plan.r == math.prod(xs)
    assert plan.q >= 2 and plan.r >= 8


@pytest.mark.parametrize(("xs", "ms", "dims"), NO_PRODUCT)
def test_plan_refuses_other_layouts(xs: tuple[int, ...], ms: tuple[int, ...], dims: tuple[int, ...]) -> None:
    assert R._plan(xs, ms, dims) is None


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the calls of the product ("product"), of its recomputation of a chunk on the
    selected data ("selected") and of the chunked select ("select")."""
    calls: list[str] = []
    for name, tag in (("_product_sum", "product"), ("_aligned_like", "selected"), ("_chunked_sum", "select")):
        real = getattr(R, name)

        def spy(*args: object, real: object = real, tag: str = tag) -> torch.Tensor:
            calls.append(tag)
            return real(*args)  # type: ignore[operator,no-any-return]

        monkeypatch.setattr(R, name, spy)
    return calls


@pytest.mark.parametrize(("xs", "ms", "dims"), LAYOUTS)
def test_product_equals_the_select_path(
    monkeypatch: pytest.MonkeyPatch, xs: tuple[int, ...], ms: tuple[int, ...], dims: tuple[int, ...]
) -> None:
    calls = _spy(monkeypatch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(xs, generator=g, dtype=torch.float64)
    m = torch.rand(ms, generator=g) > 0.4
    m[0] = False  # a fully masked sample
    x = torch.where(m, x, torch.tensor(1e30, dtype=x.dtype))  # huge but finite: multiplied by 0
    for op in (masked_sum, masked_mean):
        got = op(x, m, dims)
        with composable_only():
            want = op(x, m, dims)
        torch.testing.assert_close(got.data, want.data, rtol=1e-12, atol=1e-12)
        assert torch.equal(got.mask, want.mask)
    assert calls == ["product", "product"]


@pytest.mark.parametrize("dims", [(2, 3), (1, 2, 3), (0, 2, 3)])
def test_channels_last_data_takes_the_product_on_its_memory_order(
    monkeypatch: pytest.MonkeyPatch, dims: tuple[int, ...]
) -> None:
    calls = _spy(monkeypatch)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 4, 6, generator=g, dtype=torch.float64)
    m = torch.rand(3, 1, 4, 6, generator=g) > 0.4
    m[0] = False
    xc = torch.where(m, x, torch.tensor(math.nan, dtype=x.dtype)).contiguous(
        memory_format=torch.channels_last
    )
    assert not xc.is_contiguous() and R._memory_order(xc) == (0, 2, 3, 1)
    for op in (masked_sum, masked_mean):
        got = op(xc, m, dims, keepdim=True)
        with composable_only():
            want = op(xc, m, dims, keepdim=True)
        torch.testing.assert_close(got.data, want.data, rtol=1e-12, atol=1e-12)
        assert torch.equal(got.mask, want.mask)
        assert got.data.shape == want.data.shape
    assert calls.count("product") == 4  # per op: the permuted call and the product on its view
    # a strided slice has no dense order: the select
    assert R._memory_order(x[:, :, :, ::2]) is None


def test_fully_masked_rows_are_plus_zero() -> None:
    x = -torch.rand(2, 3, 4, 4) - 1  # negative: x * 0 = -0.0
    m = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    m[1, 0, 0, 0] = True
    for op in (masked_sum, masked_mean):
        r = op(x, m, (2, 3))
        assert torch.equal(r.data[0], torch.zeros(3)) and not bool(r.data[0].signbit().any())
        assert r.mask.tolist() == [[False] * 3, [True] * 3]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", [0, 5])
def test_a_masked_nan_or_inf_recomputes_on_the_selected_data(
    monkeypatch: pytest.MonkeyPatch, bad: float, where: int
) -> None:
    """A masked NaN/Inf in the first chunk: every chunk selected first; later: only its chunk
    recomputed. Either way the result equals, bit for bit, the one with a finite value there."""
    monkeypatch.setattr(R, "_PRODUCT_CHUNK", 3 * 4 * 4)  # one sample per chunk
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 3, 4, 4, generator=g)
    m = torch.rand(16, 1, 4, 4, generator=g) > 0.5
    m[:, :, 0, 0] = True
    m[where, :, 1, 1] = False
    finite = masked_sum(x, m, (2, 3)).data
    x[where, 1, 1, 1] = bad  # one masked value
    calls = _spy(monkeypatch)
    r = masked_sum(x, m, (2, 3))
    assert calls == ["product"] + ["selected"] * (16 if where == 0 else 1)
    assert torch.equal(r.data, finite)
    torch.testing.assert_close(r.data, torch.where(m, x, 0.0).sum((2, 3)))


def test_a_valid_nan_or_inf_propagates_to_its_row_only() -> None:
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    m = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    m[1, 0, 2, 2] = False
    x[1, :, 2, 2] = math.nan  # masked
    x[0, 1, 0, 0] = math.inf  # valid
    x[0, 2, 0, 0] = math.nan  # valid
    r = masked_sum(x, m, (2, 3)).data
    assert r[0, 1].item() == math.inf and math.isnan(r[0, 2].item())
    others = torch.tensor([[True, False, False], [True, True, True]])
    torch.testing.assert_close(r[others], torch.where(m, x, 0.0).sum((2, 3))[others])


def test_half_precision_keeps_the_float32_select(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(monkeypatch)
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.randn(2, 3, 8, 8).to(dtype)
        m = torch.rand(2, 1, 8, 8) > 0.5
        r = masked_mean(x, m, (2, 3))
        want = torch.where(m, x.float(), 0.0).sum((2, 3)) / m.sum((1, 2, 3)).clamp_min(1).unsqueeze(1) / 1.0
        assert r.data.dtype == dtype
        torch.testing.assert_close(r.data, want.to(dtype))
    assert "product" not in calls and calls


def test_autocast_keeps_float32_accumulation() -> None:
    """``torch.bmm`` runs in bfloat16 under CPU autocast: the product path is not taken there."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g) + 3.0
    m = torch.rand(2, 1, 32, 32, generator=g) > 0.5
    want = torch.where(m, x.double(), 0.0).sum((2, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = masked_sum(x, m, (2, 3)).data
    assert r.dtype == torch.float32
    torch.testing.assert_close(r.double(), want, rtol=1e-6, atol=1e-4)


def test_gradient_is_the_select_of_the_gradient() -> None:
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    m = torch.rand(2, 1, 4, 4) > 0.5
    w = torch.randn(2, 3)
    (masked_mean(x, m, (2, 3)).data * w).sum().backward()
    count = m.sum((1, 2, 3)).clamp_min(1).view(2, 1, 1, 1)
    assert x.grad is not None
    assert torch.equal(x.grad, torch.where(m, (w.view(2, 3, 1, 1) / count).expand(2, 3, 4, 4), 0.0))


_FILLS = [0.0, 1e30, -1e30, math.nan, math.inf, -math.inf, None]  # None: random values


@st.composite
def _cases(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    xs, ms, dims = draw(st.sampled_from(LAYOUTS * 3 + NO_PRODUCT))  # mostly the product's layouts
    dtype = draw(st.sampled_from([torch.float32, torch.float64] * 2 + [torch.float16, torch.bfloat16]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = torch.tensor(rng.normal(size=xs) * 10.0 ** draw(st.integers(-3, 3))).to(dtype)
    m = torch.tensor(rng.random(ms) >= draw(st.sampled_from([0.0, 0.3, 0.7, 1.0])))
    if draw(st.booleans()):
        m[0] = False  # a fully masked sample
    fill = draw(st.sampled_from(_FILLS))
    if fill is not None:
        x = torch.where(m, x, torch.tensor(fill, dtype=dtype))
    if draw(st.booleans()):  # a valid NaN or Inf somewhere
        flat = x.view(-1)
        flat[int(rng.integers(flat.numel()))] = draw(st.sampled_from([math.nan, math.inf]))
    if draw(st.integers(0, 4)) == 0:
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # not contiguous: the select path
    return x, m, dims


def _scale(x: torch.Tensor, m: torch.Tensor, dims: tuple[int, ...], mean: bool) -> torch.Tensor:
    """Sum (or mean) of the valid magnitudes: what the rounding error of a reordered sum scales with."""
    a = torch.where(m & x.isfinite(), x.double().abs(), 0.0).sum(dims)
    return a / m.expand(x.shape).sum(dims).clamp_min(1) if mean else a


@settings(max_examples=120, deadline=None)
@given(_cases())
def test_fast_equals_select_path_property(case: tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]) -> None:
    x, m, dims = case
    eps = {torch.float64: 1e-13, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[x.dtype]
    for op, mean in ((masked_sum, False), (masked_mean, True)):
        got = op(x, m, dims)
        with composable_only():
            want = op(x, m, dims)
        assert got.data.dtype == want.data.dtype
        assert torch.equal(got.mask, want.mask)
        # NaN and Inf exactly where the select path has them; the rest within rounding
        assert torch.equal(got.data.isnan(), want.data.isnan())
        assert torch.equal(got.data.isinf(), want.data.isinf())
        fin = want.data.isfinite()
        diff = (got.data.double() - want.data.double()).abs()[fin]
        bound = eps * _scale(x, m, dims, mean)[fin] + 1e-30
        assert bool((diff <= bound).all()), f"{op.__name__}: {diff.max()} above {bound.min()}"
        assert bool((got.data[~got.mask] == 0).all())


@settings(max_examples=40, deadline=None)
@given(
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31),
    rate=st.sampled_from([0.0, 0.3, 0.7]),
    small_chunks=st.booleans(),
    valid_bad=st.booleans(),
)
def test_leakage_contract_bit_for_bit(
    layout: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    dtype: torch.dtype,
    seed: int,
    rate: float,
    small_chunks: bool,
    valid_bad: bool,
) -> None:
    """masknn.testing.assert_no_leakage (exact comparison) on the product path: random, 0,
    ±1e30, NaN, ±Inf at masked positions give the same valid outputs bit for bit, including
    when only some chunks of the batch hold a NaN/Inf and when a valid NaN/Inf propagates."""
    from masknn import Masked
    from masknn.testing import assert_no_leakage

    xs, ms, dims = layout
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=xs)).to(dtype)
    m = torch.tensor(rng.random(ms) >= rate)
    if valid_bad:
        flat, mflat = x.view(-1), m.expand(xs).reshape(-1)
        k = int(rng.integers(flat.numel()))
        if bool(mflat[k]):
            flat[k] = math.inf if k % 2 else math.nan
    before = R._PRODUCT_CHUNK
    R._PRODUCT_CHUNK = math.prod(xs[1:]) if small_chunks else before  # one sample per chunk, or one chunk
    try:
        for op in (masked_sum, masked_mean):
            assert_no_leakage(
                lambda a, op=op: op(a.data, a.mask, dims),
                Masked(x, m),
                check_grad=False,
                # a valid Inf/NaN is not finite by design; a reduced batch dim has no sample 0
                check_fully_masked=not valid_bad and 0 not in dims,
            )
    finally:
        R._PRODUCT_CHUNK = before
