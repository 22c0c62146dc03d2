"""The contract checker must catch leaks: it is a test that can fail."""

from __future__ import annotations

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
