"""Small modules and checks shared by the masknn.convert rule tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from masknn import Masked
from masknn.convert import convert
from masknn.testing import assert_no_leakage


class Fn(nn.Module):
    """A module whose forward is ``fn(self, x)`` (parameters may be attached)."""

    def __init__(self, fn: Callable[..., Any], **params: nn.Parameter | torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        for k, v in params.items():
            if isinstance(v, nn.Parameter):
                self.register_parameter(k, v)
            else:
                self.register_buffer(k, v)

    def forward(self, *xs: Any) -> Any:
        return self.fn(self, *xs)


def masked_input(
    shape: tuple[int, ...], mask_shape: tuple[int, ...] | None = None, seed: int = 0, p: float = 0.35
) -> Masked:
    g = torch.Generator().manual_seed(seed)
    mask_shape = mask_shape or (shape[0], 1, *shape[2:])
    return Masked(torch.randn(shape, generator=g), torch.rand(mask_shape, generator=g) > p)


def all_valid(x: Masked) -> Masked:
    return Masked(x.data, torch.ones_like(x.full_mask()))


def parity(module: nn.Module, x: Masked, atol: float = 1e-5) -> Masked:
    """The converted module equals the original on complete data (eval mode); returns its output."""
    module.eval()
    converted = convert(module)
    with torch.no_grad():
        ref = module(x.data)
        out = converted(all_valid(x))
    assert isinstance(out, Masked)
    assert out.data.shape == ref.shape
    assert bool(out.full_mask().all()), "complete data gave masked outputs"
    torch.testing.assert_close(out.data, ref, atol=atol, rtol=1e-5)
    return out


def contract(module: nn.Module, *inputs: Any, **options: Any) -> None:
    assert_no_leakage(convert(module), *inputs, **options)


def run(module: nn.Module, *inputs: Any) -> Any:
    with torch.no_grad():
        return convert(module.eval())(*inputs)
