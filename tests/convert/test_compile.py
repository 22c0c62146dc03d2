"""Converted models under torch.compile (one graph, no recompilation for a new mask) and
torch.export (the mask is a graph input)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masknn import Masked
from masknn.convert import convert


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(self.conv(x))
        y += x
        return F.relu(y)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )


def _x(p: float, seed: int) -> Masked:
    g = torch.Generator().manual_seed(seed)
    return Masked(torch.randn(2, 3, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g) > p)


@pytest.mark.compile
def test_compile_fullgraph_one_graph_for_every_mask() -> None:
    import torch._dynamo.utils as dyn

    torch._dynamo.reset()
    dyn.counters.clear()
    eager = convert(_net()).train()
    compiled_model = convert(_net()).train()
    compiled = torch.compile(compiled_model, backend="eager", fullgraph=True)
    for i, p in enumerate([0.3, 0.7, 0.0, 1.0]):
        x = _x(p, i)
        a, b = eager(x), compiled(x)
        torch.testing.assert_close(b.data, a.data)
        assert torch.equal(b.full_mask(), a.full_mask())
        b.data.sum().backward()
    assert dyn.counters["stats"]["unique_graphs"] == 1
    assert sum(dyn.counters["graph_break"].values()) == 0


@pytest.mark.compile
def test_export_takes_the_mask_as_an_input() -> None:
    model = convert(_net()).eval()
    exported = torch.export.export(model, (_x(0.3, 0),))
    for i, p in enumerate([0.5, 0.9]):
        x = _x(p, 10 + i)
        out, ref = exported.module()(x), model(x)
        torch.testing.assert_close(out.data, ref.data)
        assert torch.equal(out.full_mask(), ref.full_mask())
