"""The contract checker must catch leaks: it is a test that can fail."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from masknn import Masked
from masknn.functional import masked_mean
from masknn.testing import LeakageError, assert_no_leakage


def _x() -> Masked:
    torch.manual_seed(0)
    return Masked(torch.randn(3, 2, 5), torch.rand(3, 1, 5) > 0.4)


class MultiplyByMask(nn.Module):
    """The common bug: NaN * 0 = NaN."""

    def forward(self, x: Masked) -> Masked:
        return Masked((x.data * x.mask).cumsum(-1) * x.mask, x.mask)


class MeanOverAll(nn.Module):
    """Averages masked values in: a value leak without NaN."""

    def forward(self, x: Masked) -> Masked:
        m = torch.where(x.mask, x.data.mean(-1, keepdim=True).nan_to_num(), torch.zeros(()))
        return Masked(m, x.mask)


class NotCanonical(nn.Module):
    def forward(self, x: Masked) -> Masked:
        return Masked(torch.where(x.mask, x.data, torch.ones(())), x.mask)


class GradLeak(nn.Module):
    """Forward is clean, but the masked input gets a gradient."""

    def forward(self, x: Masked) -> Masked:
        clean = torch.where(x.mask, x.data, torch.zeros(()))
        finite = torch.where(torch.isfinite(x.data), x.data, torch.zeros(()))
        leak = (finite - finite.detach()).sum()  # exactly 0 in value, gradient 1 everywhere
        return Masked(torch.where(x.mask, clean + leak, torch.zeros(())), x.mask)


class RunningStatLeak(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("stat", torch.zeros(()))

    def forward(self, x: Masked) -> Masked:
        if self.training:
            self.stat += x.data.nan_to_num(posinf=0.0, neginf=0.0).abs().sum().detach()
        return Masked(torch.where(x.mask, x.data, torch.zeros(())), x.mask)


class FullyMaskedNaN(nn.Module):
    """A global mean that calls every output valid: 0/0 = NaN for a fully masked sample."""

    def forward(self, x: Masked) -> Masked:
        m = x.mask.expand(x.data.shape)
        xs = torch.where(m, x.data, torch.zeros(()))
        mean = xs.sum((1, 2)) / m.sum((1, 2))
        return Masked(mean, torch.ones_like(mean, dtype=torch.bool))


class MaskChangesWithValues(nn.Module):
    def forward(self, x: Masked) -> Masked:
        m = x.mask | torch.isnan(x.data)  # the mask depends on masked values
        return Masked(torch.where(m, x.data, torch.zeros(())), m)


class Clean(nn.Module):
    def forward(self, x: Masked) -> Masked:
        return Masked(torch.where(x.mask, x.data * 2.0, torch.zeros(())), x.mask)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (MultiplyByMask(), r"output\.data at (valid|masked output) index"),
        (MeanOverAll(), r"output\.data at valid index"),
        (NotCanonical(), r"expected exactly 0 \(canonical form\)"),
        (GradLeak(), r"gradient of input 0 at masked index"),
        (RunningStatLeak(), r"buffer 'stat'"),
        (FullyMaskedNaN(), r"fully masked"),
        (MaskChangesWithValues(), r"output\.mask changed"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
def test_leaks_are_caught(module: nn.Module, message: str) -> None:
    with pytest.raises(LeakageError, match=message):
        assert_no_leakage(module, _x())


def test_clean_module_passes_and_plain_callables_work() -> None:
    assert_no_leakage(Clean(), _x())

    def fn(x: Masked) -> Tensor:
        return masked_mean(x.data, x.mask, dim=-1).data

    assert_no_leakage(fn, _x())


def test_requires_a_masked_input() -> None:
    with pytest.raises(TypeError, match="at least one masknn.Masked"):
        assert_no_leakage(Clean(), torch.zeros(2))


def test_error_names_perturbation_and_mode() -> None:
    with pytest.raises(
        LeakageError, match=r"MultiplyByMask \(train mode\), masked inputs = (nan|inf|-inf|1e\+30)"
    ):
        assert_no_leakage(MultiplyByMask(), _x())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_can_be_checked(dtype: torch.dtype) -> None:
    # Regression: the 1e30 perturbation raised "value cannot be converted to type c10::Half
    # without overflow" for float16 inputs; it is now clamped to the dtype's largest value.
    from masknn.nn import MaskedAvgPool2d

    x = Masked(torch.randn(2, 3, 4, 4, dtype=dtype), torch.rand(2, 1, 4, 4) > 0.5)
    assert_no_leakage(MaskedAvgPool2d(2), x)


# ------------------------------------------------ NaN/Inf cotangents at masked outputs


class _MultiplyGradByMask(torch.autograd.Function):
    """Forward: an exact select. Backward: the incoming gradient times the mask (the bug)."""

    @staticmethod
    def forward(y: Tensor, m: Tensor) -> Tensor:
        return torch.where(m, y, torch.zeros(()))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (m,) = ctx.saved_tensors
        return grad * m, None  # NaN * 0 = NaN


class _SelectGrad(torch.autograd.Function):
    """The same forward with a correct backward: the gradient is selected."""

    @staticmethod
    def forward(y: Tensor, m: Tensor) -> Tensor:
        return torch.where(m, y, torch.zeros(()))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (m,) = ctx.saved_tensors
        return torch.where(m, grad, torch.zeros(())), None


class ScaledByMaskGrad(nn.Module):
    """Scale then mask, with a backward that multiplies by the mask: a NaN cotangent at a
    masked output reaches the weight's gradient. Every other check passes."""

    def __init__(self, correct: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([0.5, 2.0]).reshape(1, 2, 1))
        self.fn = _SelectGrad if correct else _MultiplyGradByMask

    def forward(self, x: Masked) -> Masked:
        y = torch.where(x.mask, x.data, torch.zeros(())) * self.weight
        return Masked(self.fn.apply(y, x.mask), x.mask)


class BlurByMaskGrad(nn.Module):
    """A neighbour sum (no parameter) with the same bug: the NaN cotangent of a masked
    output reaches the input gradient at a valid neighbour."""

    def __init__(self, correct: bool = False) -> None:
        super().__init__()
        self.fn = _SelectGrad if correct else _MultiplyGradByMask

    def forward(self, x: Masked) -> Masked:
        m = x.mask.expand(x.data.shape)
        clean = torch.where(m, x.data, torch.zeros(()))
        blurred = clean + clean.roll(1, -1)  # a masked output i still depends on input i - 1
        return Masked(self.fn.apply(blurred, m), m)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (
            ScaledByMaskGrad(),
            r"cotangent (nan|inf|-inf) at masked output positions.*gradient of parameter 'weight'",
        ),
        (BlurByMaskGrad(), r"cotangent (nan|inf|-inf) at masked output positions.*gradient of input 0"),
    ],
    ids=["parameter", "input"],
)
def test_nan_cotangent_at_masked_outputs_is_caught(module: nn.Module, message: str) -> None:
    with pytest.raises(LeakageError, match=message):
        assert_no_leakage(module, _x())
    # Every other check passes: only the cotangent check sees this bug.
    assert_no_leakage(module, _x(), check_cotangents=False)


@pytest.mark.parametrize("module", [ScaledByMaskGrad(correct=True), BlurByMaskGrad(correct=True)])
def test_a_backward_that_selects_passes_the_cotangent_check(module: nn.Module) -> None:
    assert_no_leakage(module, _x())


def test_cotangent_check_also_runs_on_the_fully_masked_sample() -> None:
    # A mask with no hole: only the fully masked sample has masked outputs.
    torch.manual_seed(0)
    x = Masked(torch.randn(3, 2, 5), torch.ones(3, 1, 5, dtype=torch.bool))
    with pytest.raises(LeakageError, match=r"fully masked \(NaN\), cotangent nan at masked output"):
        assert_no_leakage(ScaledByMaskGrad(), x)
    assert_no_leakage(ScaledByMaskGrad(correct=True), x)
