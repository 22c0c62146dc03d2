"""Python operators on Masked (src/masknn/_operators.py): masked arithmetic, never tuple arithmetic."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from masknn import Masked
from masknn.functional import masked_add, masked_mul
from masknn.testing import assert_no_leakage

NAN = math.nan


def _pair() -> tuple[Masked, Masked]:
    torch.manual_seed(0)
    a = Masked(torch.randn(2, 3, 4), torch.rand(2, 1, 4) > 0.4)
    b = Masked(torch.randn(2, 3, 4), torch.rand(2, 3, 4) > 0.4)
    # Garbage at masked positions: it must never show.
    a = Masked(torch.where(a.mask, a.data, NAN), a.mask)
    b = Masked(torch.where(b.mask, b.data, math.inf), b.mask)
    return a, b


def _same(out: Masked, ref: Masked) -> None:
    assert isinstance(out, Masked)
    assert torch.equal(out.mask.expand(out.data.shape), ref.mask.expand(ref.data.shape))
    assert torch.equal(out.data, ref.data), (out.data - ref.data).abs().max()


def _canonical(out: Masked) -> None:
    valid = out.mask.expand(out.data.shape)
    assert bool((out.data[~valid] == 0).all()), "non-zero data at a masked position"
    assert bool(torch.isfinite(out.data[valid]).all())


# ------------------------------------------------------------ two Masked


def test_add_two_masked_is_masked_add_not_concatenation() -> None:
    a, b = _pair()
    out = a + b
    assert len(out) == 2 and isinstance(out, Masked)
    _same(out, masked_add(a.data, a.mask, b.data, b.mask))
    _canonical(out)


def test_iadd_rebinds_to_the_masked_sum() -> None:
    # The ResNet idiom ``out += identity``.
    a, b = _pair()
    out = a
    out += b
    _same(out, masked_add(a.data, a.mask, b.data, b.mask))
    assert a is not out  # a Masked is immutable: += rebinds, as for tuples


def test_mul_two_masked_is_masked_mul() -> None:
    a, b = _pair()
    _same(a * b, masked_mul(a.data, a.mask, b.data, b.mask))
    out = a
    out *= b
    _same(out, masked_mul(a.data, a.mask, b.data, b.mask))


def test_sub_two_masked_is_add_of_the_negation() -> None:
    a, b = _pair()
    out = a - b
    _same(out, a + (-b))
    union = a.mask | b.mask
    assert torch.equal(out.mask, union)
    ref = torch.where(a.mask, a.data, 0.0) - torch.where(b.mask, b.data, 0.0)
    assert torch.equal(out.data, torch.where(union, ref, 0.0))


def test_div_two_masked_is_valid_where_both_are() -> None:
    a, b = _pair()
    out = a / b
    both = a.mask & b.mask
    assert torch.equal(out.mask, both)
    ref = torch.where(both, a.data / b.data, 0.0)
    assert torch.equal(out.data, ref)
    _canonical(out)


def test_neg_keeps_the_mask_and_gives_plus_zero() -> None:
    a, _ = _pair()
    out = -a
    assert torch.equal(out.mask, a.mask)
    assert torch.equal(out.data, torch.where(a.mask, -a.data, 0.0))
    masked = out.data[~a.mask.expand(out.data.shape)]
    assert bool((torch.signbit(masked) == 0).all()), "-0.0 at a masked position"


# ------------------------------------------------------------ with plain operands


@pytest.mark.parametrize(
    ("op", "sym"),
    [(operator.add, "+"), (operator.sub, "-"), (operator.mul, "*"), (operator.truediv, "/")],
)
@pytest.mark.parametrize("plain", ["number", "0-d", "gate", "full"])
@pytest.mark.parametrize("masked_first", [True, False])
def test_plain_operand_keeps_the_masked_operands_mask(
    op: Callable[..., object], sym: str, plain: str, masked_first: bool
) -> None:
    a, _ = _pair()
    s: Tensor | float = {
        "number": 2.5,
        "0-d": torch.tensor(2.5),
        "gate": torch.rand(1, 3, 1) + 0.5,  # a squeeze-and-excitation style gate
        "full": torch.rand(2, 3, 4) + 0.5,
    }[plain]
    out = op(a, s) if masked_first else op(s, a)
    assert isinstance(out, Masked), f"Masked {sym} {plain}"
    assert torch.equal(out.mask, a.mask)
    filled = torch.where(a.mask, a.data, 1.0)
    ref = op(filled, s) if masked_first else op(s, filled)
    assert torch.equal(out.data, torch.where(a.mask, ref, 0.0))
    _canonical(out)


def test_plain_operand_with_more_dimensions_broadcasts_the_mask() -> None:
    a = Masked(torch.randn(3, 4), torch.tensor([[True], [False], [True]]))
    out = a * torch.ones(2, 3, 4)
    assert out.data.shape == (2, 3, 4) and out.mask.shape == (1, 3, 1)
    out = a + torch.ones(2, 3, 4)
    assert out.data.shape == (2, 3, 4) and out.mask.shape == (1, 3, 1)
    _canonical(out)


def test_to_treat_a_plain_tensor_as_valid_data_wrap_it() -> None:
    a, _ = _pair()
    t = torch.randn(2, 3, 4)
    out = a + Masked(t)
    assert bool(out.mask.all())
    assert torch.equal(out.data, torch.where(a.mask, a.data, 0.0) + t)


@pytest.mark.parametrize("masked_first", [True, False])
def test_type_promotion_follows_torch(masked_first: bool) -> None:
    half = Masked(torch.randn(2, 3).half(), torch.rand(2, 3) > 0.5)
    ints = Masked(torch.arange(6).reshape(2, 3), torch.rand(2, 3) > 0.5)
    cases: list[tuple[Masked, object]] = [
        (half, 2.0),
        (half, torch.tensor(2.0)),  # a 0-d float32 tensor does not promote float16 data
        (half, torch.full((2, 3), 2.0)),  # a dimensioned one does
        (ints, 2),
        (ints, 2.5),
        (ints, torch.tensor(2.5)),
    ]
    for x, s in cases:
        for op in (operator.add, operator.sub, operator.mul, operator.truediv):
            out = op(x, s) if masked_first else op(s, x)
            ref = op(x.data, s) if masked_first else op(s, x.data)
            assert out.data.dtype == ref.dtype, (op, x.data.dtype, s)  # type: ignore[union-attr]


def test_sum_of_a_list_of_masked() -> None:
    a, b = _pair()
    out = sum([a, b, a])
    assert isinstance(out, Masked)
    ref = masked_add(*masked_add(a.data, a.mask, b.data, b.mask), a.data, a.mask)
    _same(out, ref)


def test_tuple_behaviour_is_kept() -> None:
    a, _ = _pair()
    data, mask = a
    assert data is a.data and mask is a.mask and a[0] is a.data and a[1] is a.mask
    assert len(a) == 2 and isinstance(a, tuple) and tuple(a) == (a.data, a.mask)
    assert (*a,)[1] is a.mask
    match a:
        case Masked(d, m):
            assert d is a.data and m is a.mask


@pytest.mark.parametrize(
    ("fn", "names"),
    [
        (lambda a: a + (a.data, a.mask), r"\+: 'Masked' and 'tuple'.*masked_add.*not concatenated"),
        (lambda a: (a.data, a.mask) + a, r"\+: 'tuple' and 'Masked'.*masked_add"),
        (lambda a: a + [1.0], r"\+: 'Masked' and 'list'.*masked_cat"),
        (lambda a: a * (1, 2), r"\*: 'Masked' and 'tuple'.*masked_mul.*not concatenated or repeated"),
        (lambda a: a - None, r"-: 'Masked' and 'NoneType'"),
        (lambda a: a / "x", r"/: 'Masked' and 'str'"),
        (lambda a: np.ones(4) + a, r"\+: 'ndarray' and 'Masked'"),
        (lambda a: a * np.ones(4), r"\*: 'Masked' and 'ndarray'"),
    ],
)
def test_unsupported_operands_raise_a_type_error_naming_the_op(
    fn: Callable[[Masked], object], names: str
) -> None:
    a, _ = _pair()
    with pytest.raises(TypeError, match=names):
        fn(a)


def test_other_operators_stay_unsupported() -> None:
    # Operators tuples do not define stay unsupported (Python's own TypeError).
    a, _ = _pair()
    with pytest.raises(TypeError):
        a @ a  # type: ignore[operator]
    with pytest.raises(TypeError):
        a**2  # type: ignore[operator]


# ------------------------------------------------------------ gradients and the contract


class ScaleShift(nn.Module):
    """x * gate * scale + bias - 1, then 1 / (...) parts: every operator, with parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([0.5, 2.0, -1.0]).reshape(1, 3, 1))
        self.bias = nn.Parameter(torch.tensor([0.1, 0.2, 0.3]).reshape(1, 3, 1))
        self.gain = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: Masked, y: Masked) -> Masked:
        z = x * self.scale + self.bias
        z = self.gain * z - 1.0 + (-y)
        z = z * y + x / (self.bias + 2.0) - (2.0 / (x * x + 1.0)) * self.gain
        return z / 4.0


def test_operators_honour_the_leakage_contract() -> None:
    torch.manual_seed(0)
    x = Masked(torch.randn(3, 3, 5), torch.rand(3, 1, 5) > 0.4)
    y = Masked(torch.randn(3, 3, 5), torch.rand(3, 3, 5) > 0.4)
    # Includes the NaN/Inf cotangent check at masked outputs.
    assert_no_leakage(ScaleShift(), x, y)


def test_gradients_at_masked_positions_are_zero_for_plain_operands() -> None:
    x = Masked(torch.tensor([1.0, NAN, 3.0], requires_grad=True), torch.tensor([True, False, True]))
    s = torch.tensor([2.0, 0.0, 4.0], requires_grad=True)
    out = (x * s) + (x / s) + (s / x) + (x - s)
    out.data.sum().backward()
    assert x.data.grad is not None and s.grad is not None
    assert x.data.grad[1] == 0 and s.grad[1] == 0
    assert bool(torch.isfinite(x.data.grad).all()) and bool(torch.isfinite(s.grad).all())


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    per_element=st.booleans(),
    op=st.sampled_from([operator.add, operator.sub, operator.mul, operator.truediv]),
)
def test_two_masked_property(
    shape: list[int], seed: int, per_element: bool, op: Callable[..., Masked]
) -> None:
    """Any shapes and masks: union for + and -, intersection for * and /, equal to where-reference."""
    g = torch.Generator().manual_seed(seed)
    mshape = shape if per_element else [1] * len(shape)
    ma = torch.rand(mshape, generator=g) > 0.5
    mb = torch.rand(shape, generator=g) > 0.5
    da = torch.where(ma, torch.randn(shape, generator=g), NAN)
    db = torch.where(mb, torch.randn(shape, generator=g) + 3.0, -math.inf)
    out = op(Masked(da, ma), Masked(db, mb))
    union = op in (operator.add, operator.sub)
    valid = (ma | mb) if union else (ma & mb)
    assert torch.equal(out.mask.expand(shape), valid.expand(shape))
    fill_b = 0.0 if union else 1.0
    ref = op(torch.where(ma, da, 0.0), torch.where(mb, db, fill_b))
    assert torch.equal(out.data, torch.where(valid, ref, 0.0))


def test_in_place_into_a_plain_tensor_is_refused_or_rebinds() -> None:
    a, _ = _pair()
    t = torch.zeros(2, 3, 4)
    with pytest.raises(TypeError, match=r"a plain tensor cannot take the masked result of \*= in place"):
        t.mul_(a)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"\+= in place"):
        t.add_(a)  # type: ignore[arg-type]
    assert bool((t == 0).all())
    # Python's t += a falls back to t = t + a when the in-place op refuses: t is rebound to
    # the Masked sum (the mask is a's), the tensor itself is untouched.
    u = t
    u += a  # type: ignore[assignment]
    assert isinstance(u, Masked) and torch.equal(u.mask, a.mask) and bool((t == 0).all())


def test_other_torch_functions_refuse_a_masked() -> None:
    a, _ = _pair()
    with pytest.raises(TypeError, match="Masked"):
        torch.relu(a)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Masked"):
        torch.add(torch.zeros(2, 3, 4), a, alpha=2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Masked"):
        torch.cat([a.data, a])  # type: ignore[list-item]


def _every_operator(x: Masked, y: Masked, t: Tensor) -> tuple[Masked, ...]:
    z = x
    z += t
    z *= t
    return (x + y, x - y, x * y, x / y, -x, x + t, t + x, x - t, t - x, x * t, t * x, x / t, t / x, z)


@pytest.mark.compile
def test_operators_under_torch_compile_fullgraph_equal_eager() -> None:
    a, b = _pair()
    t = torch.rand(1, 3, 1) + 0.5
    compiled = torch.compile(_every_operator, fullgraph=True, backend="aot_eager")
    for out, ref in zip(compiled(a, b, t), _every_operator(a, b, t)):
        assert isinstance(out, Masked)
        assert torch.equal(out.mask, ref.mask)
        torch.testing.assert_close(out.data, ref.data, rtol=0, atol=0, equal_nan=False)
