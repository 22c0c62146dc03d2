"""masked_sync_batch_norm in one process: as masked_batch_norm without a process group, and both of
its kernels (eager fast node, composable plain ops) against a naive float64 reference in a gloo group
of one process, where every all-reduce is the identity. Across processes: tests/nn/test_sync_batchnorm.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st

import masknn.functional as MF
from masknn.functional._select import composable_only
from masknn.functional.sync_batch_norm import (
    _composite,
    _sync_world_size,
    _SyncBatchNormTrain,
    masked_sync_batch_norm,
)


@pytest.fixture(scope="module")
def solo() -> Iterator[Any]:
    """A gloo process group of one process (in-memory store): the all-reduces are identities."""
    if dist.is_initialized():  # pragma: no cover - another test left one behind
        pytest.skip("a process group is already initialized in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield dist.group.WORLD
    finally:
        dist.destroy_process_group()


@contextmanager
def no_collectives() -> Iterator[None]:
    """Any ``dist.all_reduce`` inside the block fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a collective was called")

    before = dist.all_reduce
    dist.all_reduce = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        dist.all_reduce = before


def _naive(
    x: torch.Tensor, m: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float64 masked batch norm written plainly: (y, mean, biased var, count)."""
    x64 = x.double()
    mf = m.expand(x.shape)
    dims = (0, *range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    zero = torch.zeros((), dtype=torch.float64)
    n = mf.sum(dims).double()
    xz = torch.where(mf, x64, zero)  # NaN never enters the graph
    mean = xz.sum(dims) / n.clamp_min(1)
    var = torch.where(mf, xz - mean.reshape(shape), zero).square().sum(dims) / n.clamp_min(1)
    y = (xz - mean.reshape(shape)) / (var.reshape(shape) + eps).sqrt()
    if w is not None:
        y = y * w.double().reshape(shape)
    if b is not None:
        y = y + b.double().reshape(shape)
    return torch.where(mf, y, zero), mean, var, n


def _data(
    shape: tuple[int, ...], per_channel: bool, p: float, seed: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mshape = (shape[0], shape[1] if per_channel else 1, *shape[2:])
    m = torch.rand(mshape, generator=g) > p
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 3).to(dtype)
    return torch.where(m, x, torch.tensor(float("nan"), dtype=dtype)), m


def test_without_a_process_group_it_is_masked_batch_norm() -> None:
    assert not dist.is_initialized() and _sync_world_size() == 1
    x, m = _data((3, 4, 5, 6), per_channel=True, p=0.4, seed=0)
    w, b = torch.linspace(0.5, 2, 4), torch.linspace(-1, 1, 4)
    rm1, rv1, rm2, rv2 = torch.zeros(4), torch.ones(4), torch.zeros(4), torch.ones(4)
    out = masked_sync_batch_norm(x, m, rm1, rv1, w, b, momentum=0.3, eps=1e-3)
    ref = MF.masked_batch_norm(x, m, rm2, rv2, w, b, training=True, momentum=0.3, eps=1e-3)
    assert torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)
    assert torch.equal(rm1, rm2) and torch.equal(rv1, rv2)


def test_errors_name_the_op() -> None:
    with pytest.raises(TypeError, match="masked_sync_batch_norm: expected data as a torch.Tensor"):
        masked_sync_batch_norm([1.0], torch.ones(1, dtype=torch.bool))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"masked_sync_batch_norm: expected data \(N, C, \*\).*\(5,\)"):
        masked_sync_batch_norm(torch.ones(5), torch.ones(5, dtype=torch.bool))
    with pytest.raises(TypeError, match="masked_sync_batch_norm: expected floating point data"):
        masked_sync_batch_norm(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"masked_sync_batch_norm: mask shape \(2, 2\)"):
        masked_sync_batch_norm(torch.ones(2, 3), torch.ones(2, 2, dtype=torch.bool))


def _run(
    kernel: str, x: torch.Tensor, m: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, group: Any
) -> tuple[torch.Tensor, ...]:
    if kernel == "fast":
        out: tuple[torch.Tensor, ...] = _SyncBatchNormTrain.apply(x, m, w, b, 1e-5, group)
        return out
    with composable_only():
        return _composite(x, m, w, b, 1e-5, group)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(0, 3),
    c=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    mask_kind=st.sampled_from(["per-channel", "shared", "all-valid"]),
    p=st.sampled_from([0.0, 0.5, 1.0]),
    affine=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_both_kernels_match_a_naive_reference(
    solo: Any,
    n: int,
    c: int,
    spatial: list[int],
    mask_kind: str,
    p: float,
    affine: bool,
    dtype: torch.dtype,
    seed: int,
) -> None:
    shape = (n, c, *spatial)
    x, m = _data(shape, mask_kind == "per-channel", p, seed, dtype)
    if mask_kind == "all-valid":
        m = torch.ones((1,) * len(shape), dtype=torch.bool)
        x = torch.nan_to_num(x, nan=0.5)
    g = torch.Generator().manual_seed(seed + 1)
    w = (torch.rand(c, generator=g, dtype=dtype) + 0.5).requires_grad_() if affine else None
    b = torch.randn(c, generator=g, dtype=dtype).requires_grad_() if affine else None
    # a NaN cotangent at masked outputs must reach no gradient
    nan = torch.tensor(float("nan"), dtype=dtype)
    cot = torch.where(m, torch.randn(shape, generator=g, dtype=dtype), nan)
    xr = x.clone().requires_grad_()
    y_ref, mean_ref, var_ref, n_ref = _naive(xr, m, w, b, 1e-5)
    # float32 rounding of x - mean is amplified by 1/std (as in torch's own batch-norm kernel)
    with torch.no_grad():
        amp = 1 + float((mean_ref.abs().max() if n_ref.sum() else 0) * (var_ref + 1e-5).rsqrt().max())
    single = dtype == torch.float32
    tol = {"atol": 1e-5 * amp, "rtol": 1e-4} if single else {"atol": 1e-10 * amp, "rtol": 1e-9}
    ref_params = [t for t in (xr, w, b) if t is not None]
    want = torch.autograd.grad(y_ref, ref_params, cot.double(), allow_unused=True) if x.numel() else ()
    for kernel in ("fast", "composable"):
        xk = x.clone().requires_grad_()
        params = [t for t in (xk, w, b) if t is not None]
        y, mean, var, cnt = _run(kernel, xk, m, w, b, solo)
        torch.testing.assert_close(y, y_ref.to(dtype), **tol)
        assert bool((y[~m.expand(shape)] == 0).all())
        torch.testing.assert_close(cnt.double(), n_ref)
        valid = n_ref > 0
        torch.testing.assert_close(mean.double()[valid], mean_ref[valid], **tol)
        torch.testing.assert_close(var.double()[valid], var_ref[valid], **tol)
        if y.numel() == 0:
            continue
        got = torch.autograd.grad(y, params, cot, allow_unused=True)
        for gk, gr in zip(got, want):
            gk = torch.zeros_like(params[0]) if gk is None else gk
            assert bool(torch.isfinite(gk).all())
            gr = torch.zeros_like(gk) if gr is None else gr
            torch.testing.assert_close(gk, gr.to(dtype), **tol)
        assert bool((got[0][~m.expand(shape)] == 0).all())


@pytest.mark.parametrize("kernel", ["fast", "composable"])
def test_double_backward_gradgradcheck(solo: Any, kernel: str) -> None:
    x, m = _data((3, 2, 4), per_channel=True, p=0.4, seed=3, dtype=torch.float64)
    x = torch.nan_to_num(x).requires_grad_()  # gradcheck perturbs masked entries too
    w = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.1, -0.2], dtype=torch.float64, requires_grad=True)

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _run(kernel, x, m, w, b, solo)[0]

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_a_group_of_one_process_communicates_nothing(solo: Any) -> None:
    assert _sync_world_size() == 1 and _sync_world_size(solo) == 1
    x, m = _data((3, 2, 4, 4), per_channel=False, p=0.3, seed=4)
    with no_collectives():
        out = masked_sync_batch_norm(x, m, torch.zeros(2), torch.ones(2), process_group=solo)
    ref = MF.masked_batch_norm(x, m, training=True)
    assert torch.equal(out.data, ref.data)


@pytest.mark.parametrize("kernel", ["fast", "composable"])
def test_two_passes_keep_float32_precision_far_from_zero(solo: Any, kernel: str) -> None:
    # mean 1e4, std 1: a one-pass Σx² - n·mean² in float32 loses every digit of the variance.
    x, m = _data((4, 2, 8, 8), per_channel=False, p=0.3, seed=5, dtype=torch.float64)
    x = x + 1e4
    y64 = _naive(x, m, None, None, 1e-5)[0]
    y = _run(kernel, x.float(), m, None, None, solo)[0]
    torch.testing.assert_close(y.double(), y64, atol=5e-3, rtol=0)
