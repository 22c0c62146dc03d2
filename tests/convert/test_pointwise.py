"""Element-wise rules: activations re-zeroed, parameters keep the data's mask, union / intersection
of two data operands, in-place forms, safe inputs for sqrt/log/reciprocal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masknn import Masked
from masknn.convert import convert
from tests.convert._helpers import Fn, contract, masked_input, parity, run

UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "relu_inplace": lambda x: F.relu(x.clone(), inplace=True),
    "relu6": F.relu6,
    "hardtanh_shifted": lambda x: F.hardtanh(x, 0.5, 2.0),  # maps 0 to 0.5: re-zeroed
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "hardswish_inplace": lambda x: F.hardswish(x.clone(), inplace=True),
    "sigmoid": torch.sigmoid,
    "sigmoid_method": lambda x: x.sigmoid(),
    "hardsigmoid": F.hardsigmoid,
    "hardsigmoid_inplace": lambda x: F.hardsigmoid(x.clone(), inplace=True),
    "tanh": torch.tanh,
    "elu": F.elu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
    "mish": F.mish,
    "softplus": F.softplus,
    "exp": torch.exp,
    "abs": torch.abs,
    "neg": lambda x: -x,
    "clamp": lambda x: x.clamp(0.1, 0.5),
    "add_scalar": lambda x: x + 1.0,
    "radd_scalar": lambda x: 1.0 + x,
    "rsub_scalar": lambda x: 1.0 - x,
    "mul_scalar": lambda x: x * 2.5,
    "div_scalar": lambda x: x / 4.0,
    "pow_2": lambda x: x**2,
    "hard_swish_by_hand": lambda x: x * F.relu6(x + 3.0) / 6.0,
    "sqrt_abs": lambda x: torch.sqrt(x.abs()),
    "log_abs": lambda x: (x.abs() + 0.5).log(),
    "rsqrt": lambda x: torch.rsqrt(x.abs() + 0.1),
    "reciprocal_abs": lambda x: 1.0 / (x.abs() + 0.5),
    "pow_half": lambda x: x.abs() ** 0.5,
    "dropout_eval": lambda x: F.dropout(x, 0.5, training=False),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name: str) -> None:
    fn = UNARY[name]
    m = Fn(lambda self, x: fn(x))
    x = masked_input((2, 3, 5, 5))
    parity(m, x)
    out = run(m, x)
    # the plain value at valid positions, exactly 0 and masked elsewhere
    assert torch.equal(out.full_mask(), x.full_mask().expand(2, 3, 5, 5))
    torch.testing.assert_close(out.data, torch.where(x.mask, fn(x.data), 0.0))
    contract(m, x)


def test_sqrt_gradient_is_zero_not_nan_at_masked_positions() -> None:
    x = masked_input((2, 3, 4, 4))
    data = x.data.abs().requires_grad_(True)
    out = convert(Fn(lambda self, t: torch.sqrt(t).sum((2, 3))))(Masked(data, x.mask))
    out.data.sum().backward()
    assert data.grad is not None
    assert bool(data.grad.isfinite().all())
    assert bool((data.grad[~x.full_mask().expand_as(data)] == 0).all())


def test_parameter_or_noise_keeps_the_data_mask() -> None:
    gamma = nn.Parameter(torch.rand(1, 3, 1, 1) + 0.5)

    def fn(self: nn.Module, x: Tensor) -> Tensor:
        x = self.gamma * x  # layer scale
        x = x + self.bias  # a bias added to the data
        return x + torch.randn_like(x) * 0.01 if self.training else x

    m = Fn(fn, gamma=gamma, bias=nn.Parameter(torch.randn(3, 1, 1)))
    x = masked_input((2, 3, 5, 5))
    parity(m, x)
    out = run(m, x)
    assert torch.equal(out.full_mask(), x.full_mask().expand(2, 3, 5, 5))
    assert bool((out.data[~out.full_mask()] == 0).all())
    contract(m, x)  # train mode: the noise is seeded by the checker


def _two(op: Callable[[Tensor, Tensor], Tensor]) -> nn.Module:
    def fn(self: nn.Module, a: Tensor, b: Tensor) -> Tensor:
        return op(a, b)

    return Fn(fn)


@pytest.mark.parametrize(
    ("name", "op", "union"),
    [
        ("add", lambda a, b: a + b, True),
        ("sub", lambda a, b: a - b, True),
        ("torch.add_alpha", lambda a, b: torch.add(a, b, alpha=2.0), True),
        ("mul", lambda a, b: a * b, False),
        ("div", lambda a, b: a / (b.abs() + 1.0), False),
        ("maximum", torch.maximum, False),
    ],
)
def test_two_data_operands(name: str, op: Callable[[Tensor, Tensor], Tensor], union: bool) -> None:
    a = masked_input((2, 3, 5, 5), seed=1)
    b = masked_input((2, 3, 5, 5), (2, 3, 5, 5), seed=2)
    out = run(_two(op), a, b)
    ma, mb = a.full_mask().expand(2, 3, 5, 5), b.full_mask()
    expected = (ma | mb) if union else (ma & mb)
    assert torch.equal(out.full_mask(), expected)
    za, zb = torch.where(ma, a.data, 0.0), torch.where(mb, b.data, 0.0)
    torch.testing.assert_close(out.data, torch.where(expected, op(za, zb), 0.0))
    contract(_two(op), a, b)


def test_squeeze_excitation_scale_broadcasts() -> None:
    """``x * scale`` with a per-sample (N, C, 1, 1) scale: the intersection is the data's mask."""

    def fn(self: nn.Module, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc(s))
        return s * x

    m = Fn(fn)
    m.fc = nn.Conv2d(4, 4, 1)
    x = masked_input((3, 4, 5, 5))
    x.mask[0] = False  # a fully masked sample
    parity(m, x)
    out = run(m, x)
    assert torch.equal(out.full_mask(), x.full_mask())
    assert bool((out.data[0] == 0).all())
    contract(m, x)


def test_residual_inplace_add_updates_the_same_object_and_takes_the_union() -> None:
    seen = {}

    def fn(self: nn.Module, x: Tensor) -> Tensor:
        out = self.conv(x)
        same = out
        out += x  # Tensor.__iadd__: in place, union of the masks
        seen["same"] = out is same
        out = F.relu(out, inplace=True)
        seen["relu_same"] = out is same
        return out

    m = Fn(fn)
    m.conv = nn.Conv2d(3, 3, 3, padding=1)
    x = masked_input((2, 3, 6, 6))
    parity(m, x)
    out = run(m, x)
    assert seen == {"same": True, "relu_same": True}
    conv_valid = convert(m.conv)(x).full_mask()
    assert torch.equal(out.full_mask(), conv_valid | x.full_mask())
    contract(m, x)


def test_inplace_into_a_plain_tensor_is_refused() -> None:
    from masknn.convert import ConversionError

    def fn(self: nn.Module, x: Tensor) -> Tensor:
        acc = torch.zeros(x.shape)
        acc.add_(x)
        return acc

    with pytest.raises(ConversionError, match="plain tensor"):
        run(Fn(fn), masked_input((2, 3, 4, 4)))


def test_comparison_is_refused() -> None:
    from masknn.convert import ConversionError

    with pytest.raises(ConversionError, match=r"Tensor\.gt|Tensor\.__gt__"):
        run(Fn(lambda self, x: x * (x > 0)), masked_input((2, 3, 4, 4)))


@pytest.mark.parametrize(
    "make",
    [
        lambda x: torchvision_stochastic_depth(x),
        lambda x: F.dropout2d(x, 0.3, training=True),
        lambda x: F.dropout(x, 0.3, training=True),
    ],
    ids=["stochastic_depth", "dropout2d", "dropout"],
)
def test_dropout_and_stochastic_depth_in_training(make: Callable[[Tensor], Tensor]) -> None:
    x = masked_input((4, 3, 5, 5))
    m = Fn(lambda self, t: make(t))
    contract(m, x, modes=("train",))
    out = convert(m.train())(x)
    assert torch.equal(out.full_mask(), x.full_mask())


def torchvision_stochastic_depth(x: Tensor) -> Tensor:
    """torchvision.ops.stochastic_depth, written out as it is there (row mode)."""
    survival = 0.7
    size = [x.shape[0]] + [1] * (x.ndim - 1)
    noise = torch.empty(size, dtype=x.dtype, device=x.device)
    noise = noise.bernoulli_(survival)
    noise.div_(survival)
    return x * noise


def test_canonical_zeros_whatever_the_other_operand_holds() -> None:
    """A plain operand holding Inf or NaN never puts a non-zero at a masked position."""
    inf = torch.full((1, 3, 1, 1), float("inf"))

    for fn in (
        lambda x: x * inf,
        lambda x: torch.mul(x, other=inf),
        lambda x: x / torch.zeros(1, 3, 1, 1),
        lambda x: F.prelu(x, torch.tensor([float("nan")])),
    ):
        x = masked_input((2, 3, 4, 4))
        out = run(Fn(lambda self, t, fn=fn: fn(t)), x)
        assert bool((out.data[~out.full_mask()] == 0).all())
