"""Rows for the masked reductions (functional only): over the spatial dims of ``(N, C, H, W)``
with a channel-shared mask, and softmax over the last dim of ``(N, L, S)`` with a key mask."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

import masknn.functional as F
from tests.compat.calls import on_data
from tests.compat.harness import Builder, CompatInfo
from tests.compat.inputs import image, step_mask

DIMS = (2, 3)


def _scores(length: int = 4, keys: int = 6) -> Builder:
    """``(scores, key_mask)``: ``(N, L, S)`` attention scores and a key mask ``(N, 1, S)``."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        s = keys + grow
        x = torch.randn(n, length + grow, s, generator=g)
        m = step_mask(n, s, g).unsqueeze(1)
        if hole is not None:
            x = torch.where(m, x, torch.tensor(hole))
        return x, m

    return make


def _reduction(name: str, op: Any, twin: Any, inputs: Builder, **kwargs: Any) -> CompatInfo:
    def call(layer: nn.Module, x: Tensor, m: Tensor) -> Any:
        return op(x, m, **kwargs)

    return CompatInfo(name, (op,), nn.Module, call, inputs, on_data(twin))


ROWS = [
    _reduction("masked_sum", F.masked_sum, lambda x: x.sum(DIMS), image(), dim=DIMS),
    _reduction("masked_mean", F.masked_mean, lambda x: x.mean(DIMS), image(), dim=DIMS),
    _reduction("masked_var", F.masked_var, lambda x: x.var(DIMS), image(), dim=DIMS),
    _reduction("masked_std", F.masked_std, lambda x: x.std(DIMS), image(), dim=DIMS),
    _reduction("masked_max", F.masked_max, lambda x: x.amax(DIMS), image(), dim=DIMS),
    _reduction("masked_min", F.masked_min, lambda x: x.amin(DIMS), image(per_channel=True), dim=DIMS),
    _reduction(
        "masked_logsumexp", F.masked_logsumexp, lambda x: x.logsumexp(DIMS), image(), dim=DIMS, keepdim=True
    ),
    _reduction("masked_softmax", F.masked_softmax, lambda x: x.softmax(-1), _scores(), dim=-1),
    _reduction("masked_log_softmax", F.masked_log_softmax, lambda x: x.log_softmax(-1), _scores(), dim=-1),
]
