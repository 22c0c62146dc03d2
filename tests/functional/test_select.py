"""The select primitive of every op: exact ``torch.where(mask, x, 0)`` on both paths, composable."""

from __future__ import annotations

import pytest
import torch

from masknn.functional._select import composable_only, fast_path, fill_value, select, select_into

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
_INT = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_select_is_exact_for_nan_inf_and_signed_zero(dtype: torch.dtype) -> None:
    x = torch.tensor([1.5, float("nan"), float("inf"), -float("inf"), -0.0, float("nan")], dtype=dtype)
    m = torch.tensor([True, False, False, False, True, True])
    y = select(x, m)
    assert bool((y[~m] == 0).all()) and not bool(torch.signbit(y[~m]).any())  # +0.0
    assert y[0] == 1.5 and bool(torch.signbit(y[4])) and bool(torch.isnan(y[5]))  # valid bits kept
    into = select_into(x.view(2, 3), m.view(2, 3)).view(-1)  # the (N, C, ...) helper
    assert torch.equal(into.view(_INT[dtype]), y.view(_INT[dtype]))  # bit for bit (NaN != NaN)


@pytest.mark.parametrize("dtype", DTYPES)
def test_select_non_contiguous_broadcast_and_gradient(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 5, generator=g).to(dtype).transpose(1, 2).requires_grad_(True)
    m = torch.rand(4, 1, 6, generator=g) > 0.5
    y = select(x, m)
    assert torch.equal(y, torch.where(m, x, torch.zeros((), dtype=dtype)))
    y.sum().backward()  # an expanded (stride 0) incoming gradient
    assert x.grad is not None
    assert torch.equal(x.grad, m.expand(x.shape).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_select_accepts_tensors_with_the_negative_bit(dtype: torch.dtype) -> None:
    # Regression: Tensor.view(int dtype) raises for a tensor with the negative bit set.
    base = torch.randn(6, generator=torch.Generator().manual_seed(1)).to(dtype)
    x = torch._neg_view(base)
    m = torch.tensor([True, False, True, True, False, True])
    expected = torch.where(m, -base, torch.zeros((), dtype=dtype))
    assert torch.equal(select(x, m), expected)
    assert torch.equal(select_into(x.view(3, 2), m.view(3, 2)).view(-1), expected)


def _nan_holed(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    m = torch.rand(3, 1, 5, generator=g) > 0.4
    x = torch.randn(3, 4, 5, generator=g, dtype=torch.float64).to(dtype)
    return torch.where(m, x, torch.tensor(float("nan"), dtype=dtype)), m


def test_select_takes_the_fast_path_in_eager_cpu_only() -> None:
    x, m = _nan_holed(torch.float32)
    assert fast_path(x, m)
    assert type(select(x.requires_grad_(), m).grad_fn).__name__ == "_SelectZeroBackward"
    with torch.device("cpu"):  # a TorchFunctionMode is active: the composable path
        assert not fast_path(x, m)
        assert type(select(x, m).grad_fn).__name__ == "WhereBackward0"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_select_double_backward_is_the_select_again(dtype: torch.dtype) -> None:
    x, m = _nan_holed(dtype)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad((select(x, m) ** 3).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    xs = torch.where(m, x.detach(), 0.0)
    assert torch.equal(g.detach(), torch.where(m, 3 * xs**2, 0.0))
    assert torch.equal(gg, torch.where(m, 6 * xs, 0.0))
    assert bool(torch.isfinite(gg).all())


def test_select_gradgradcheck_float64() -> None:
    x, m = _nan_holed(torch.float64)
    x = torch.where(m, x, 0.0).requires_grad_(True)  # gradcheck perturbs every element
    assert torch.autograd.gradgradcheck(lambda t: select(t, m) ** 2, (x,))


def test_select_under_vmap_grad_and_compile() -> None:
    x, m = _nan_holed(torch.float32)
    per_sample = torch.func.vmap(lambda a, b: select(a, b))(x, m)
    assert torch.equal(per_sample, torch.where(m, x, 0.0))
    g = torch.func.grad(lambda a: select(a, m).sum())(x)
    assert torch.equal(g, m.expand(x.shape).float())
    compiled = torch.compile(select, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x, m), torch.where(m, x, 0.0))


def test_select_exports_as_a_where() -> None:
    x, m = _nan_holed(torch.float32)

    class Sel(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return select(a, b)

    ep = torch.export.export(Sel(), (x, m))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "aten.where.self" in targets and not any("bitwise" in t or "view" in t for t in targets)
    x2, m2 = _nan_holed(torch.float64)
    x2, m2 = torch.nan_to_num(x2).float(), m2
    x2 = x2 + 1.0  # other data, another mask
    assert torch.equal(ep.module()(x2, m2.flip(0)), torch.where(m2.flip(0), x2, 0.0))


def test_composable_only_forces_the_where_path() -> None:
    x, m = _nan_holed(torch.float32)
    x.requires_grad_(True)
    with composable_only():
        assert not fast_path(x, m)
        y = select(x, m)
    assert type(y.grad_fn).__name__ == "WhereBackward0"
    assert fast_path(x, m)
    assert torch.equal(y, select(x, m))


@pytest.mark.compile
@pytest.mark.parametrize("value", [0.0, float("-inf"), float("inf"), 2.5])
def test_fill_value_is_derived_from_the_mask_under_compile(value: float) -> None:
    # Under torch.compile the filler of a where is computed from the mask (no 0-d constant
    # that AOTAutograd would share between every where of a model); its values where the
    # mask is False are exactly ``value``, and a new mask of the same shape is data: no
    # recompilation.
    from torch._dynamo.testing import CompileCounterWithBackend

    def fill(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(b, a, fill_value(b, a, value))

    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> torch.fx.GraphModule:
        graphs.append(gm)
        return gm

    torch._dynamo.reset()
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(fill, backend=counter, fullgraph=True)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        m = torch.rand(2, 1, 3, 4, generator=g) > 0.5
        x = torch.where(m, torch.randn(2, 3, 3, 4, generator=g), torch.nan)
        out = compiled(x, m)
        ref = torch.where(m, x, torch.tensor(value))
        assert torch.equal(out, ref) and torch.equal(fill(x, m), ref)
        if value == 0.0:
            assert not out.signbit()[~m.expand(x.shape)].any()  # +0.0, as torch.where(m, x, 0.0)
    assert counter.frame_count == 1
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert not any("full" in t or "zeros" in t or "scalar_tensor" in t for t in targets), targets
