"""Input builders of the compatibility table: tiny tensors, masks with holes, ``hole`` in them.

Each builder returns a :data:`tests.compat.harness.Builder`: ``(n, grow, generator, hole)``
gives the positional inputs for a batch of ``n`` with every spatial/time size grown by
``grow``. Data at masked positions holds ``hole`` (NaN in most checks: a capability that
lets a masked value through shows it as a NaN) or random values when ``hole`` is None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from masknn import Masked
from tests.compat.harness import Builder


def _mask(shape: Sequence[int], g: torch.Generator, p: float = 0.35) -> Tensor:
    m = torch.rand(tuple(shape), generator=g) > p
    # Keep one valid position per sample, so no check rests on fully masked samples only.
    flat = m.view(m.shape[0], -1)
    flat[:, 0] = True
    return m


def _holed(x: Tensor, m: Tensor, hole: float | None) -> Tensor:
    if hole is None:
        return x
    return torch.where(m, x, torch.tensor(hole, dtype=x.dtype))


def grid(c: int, spatial: Sequence[int], per_channel: bool = False) -> Builder:
    """``(x, mask)``: data ``(N, c, *spatial)``, mask ``(N, 1 or c, *spatial)``."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        size = [s + grow for s in spatial]
        x = torch.randn(n, c, *size, generator=g)
        m = _mask((n, c if per_channel else 1, *size), g)
        return _holed(x, m, hole), m

    return make


def image(c: int = 3, h: int = 5, w: int = 6, per_channel: bool = False) -> Builder:
    return grid(c, (h, w), per_channel)


def signal(c: int = 3, length: int = 7, per_channel: bool = False) -> Builder:
    return grid(c, (length,), per_channel)


def volume(c: int = 2, d: int = 3, h: int = 4, w: int = 4, per_channel: bool = False) -> Builder:
    return grid(c, (d, h, w), per_channel)


def features(f: int = 6) -> Builder:
    """``(x, mask)``: ``(N, f)`` with a per-feature mask (no size grows)."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        x = torch.randn(n, f, generator=g)
        m = _mask((n, f), g)
        return _holed(x, m, hole), m

    return make


def step_mask(n: int, t: int, g: torch.Generator) -> Tensor:
    """``(N, T)``: sample 0 has holes in the middle (valid at both ends), the rest random."""
    m = torch.rand(n, t, generator=g) > 0.35
    m[:, 0] = True
    m[0, -1] = True
    m[0, t // 2] = False
    m[0, t // 2 - 1] = False
    return m


def sequence(f: int = 5, t: int = 6, time_first: bool = False, mask_3d: bool = False) -> Builder:
    """``(x, mask)``: ``(N, T, f)`` (``(T, N, f)`` time first) with a step mask ``(N, T)``
    (``(N, T, 1)`` with ``mask_3d``) that has holes in the middle."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        steps = t + grow
        x = torch.randn(n, steps, f, generator=g)
        m = step_mask(n, steps, g)
        x = _holed(x, m.unsqueeze(-1), hole)
        if mask_3d:
            m = m.unsqueeze(-1)
        if time_first:
            return x.transpose(0, 1).contiguous(), m.transpose(0, 1).contiguous()
        return x, m

    return make


def pair(first: Builder, second: Builder) -> Builder:
    """Both builders' inputs, one after the other: ``(x, m, y, m2)``."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        return (*first(n, grow, g, hole), *second(n, grow, g, hole))

    return make


def with_tensor(first: Builder, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Builder:
    """The builder's inputs and one more random tensor ``(N, *shape)`` (e.g. an initial state)."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        return (*first(n, grow, g, hole), torch.randn(n, *shape, generator=g).to(dtype))

    return make


def class_targets(c: int = 4, t: int = 5) -> Builder:
    """``(logits, target, mask)``: logits ``(N, c, T)``, class targets and a mask ``(N, T)``;
    masked targets hold an out-of-range class."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        steps = t + grow
        logits = torch.randn(n, c, steps, generator=g)
        target = torch.randint(0, c, (n, steps), generator=g)
        m = step_mask(n, steps, g)
        return logits, torch.where(m, target, torch.full_like(target, 99)), m

    return make


def binary_targets(f: int = 5, t: int = 4) -> Builder:
    """``(logits, mask, target, target_mask)`` with 0/1 targets, ``(N, T, f)``."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        size = (n, t + grow, f)
        x, tg = torch.randn(*size, generator=g), (torch.rand(*size, generator=g) > 0.5).float()
        m, tm = _mask(size, g), _mask((n, t + grow, 1), g)
        return _holed(x, m, hole), m, _holed(tg, tm, hole), tm

    return make


def masked(builder: Builder) -> Builder:
    """The builder's ``(x, mask)`` as one ``Masked`` input (the carrier rows)."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        x, m = builder(n, grow, g, hole)[:2]
        return (Masked(x, m),)

    return make
