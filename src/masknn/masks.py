"""Seeded, vectorized mask generators for training and tests.

Every generator returns a bool tensor of ``shape`` with **True = valid** and
``coverage`` = the fraction of positions that are *masked*. The last two
dimensions are spatial ``(H, W)``; leading dimensions are independent samples
(e.g. ``(N, 1, H, W)``). ``coverage`` is one number for every sample, or one per
sample along the first dimension (a sequence or 1-d tensor of length ``N``; each
value applies to every channel of its sample), e.g. to train on a range of
missing rates.

* [`random_mask`][masknn.masks.random_mask]: each position is dropped independently with probability
  ``coverage`` (so coverage is exact on average);
* [`rectangle_mask`][masknn.masks.rectangle_mask], [`stroke_mask`][masknn.masks.stroke_mask],
  [`cloud_mask`][masknn.masks.cloud_mask]: shapes drawn
  from a random field whose lowest ``round(coverage * H * W)`` positions are
  masked, so every sample's coverage is exact to one pixel.

Pass a ``torch.Generator`` (or an int seed) for reproducible masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["cloud_mask", "random_mask", "rectangle_mask", "stroke_mask"]

Seed = torch.Generator | int | None
Coverage = float | Sequence[float] | Tensor


def _gen(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    g.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    return g


def _check(name: str, shape: Sequence[int], min_dims: int = 2) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) < min_dims or any(s <= 0 for s in shape):
        raise ValueError(f"{name}: expected a shape (..., H, W) of positive sizes, got {shape}")
    return shape


def _coverage(name: str, shape: tuple[int, ...], coverage: Coverage, spatial: int = 2) -> Tensor:
    """``coverage`` as a float64 tensor broadcastable to ``shape``: a scalar, or one value
    per sample along the first dimension (shape ``(N, 1, ..., 1)``)."""
    if isinstance(coverage, bool):
        raise TypeError(f"{name}: expected coverage as a number or one number per sample, got {coverage!r}")
    if isinstance(coverage, Tensor):
        cov = coverage.detach().to(device="cpu", dtype=torch.float64)
    elif isinstance(coverage, (int, float)):
        cov = torch.tensor(float(coverage), dtype=torch.float64)
    elif isinstance(coverage, Sequence) and not isinstance(coverage, (str, bytes)):
        try:
            cov = torch.tensor([float(c) for c in coverage], dtype=torch.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: coverage must hold numbers, got {coverage!r}") from None
    else:
        raise TypeError(
            f"{name}: expected coverage as a number or one number per sample, got {type(coverage).__name__}"
        )
    if cov.dim() > 1:
        raise ValueError(f"{name}: expected a number or a 1-d coverage, got shape {tuple(cov.shape)}")
    if cov.dim() == 1:
        if len(shape) <= spatial or cov.shape[0] != shape[0]:
            n = shape[0] if len(shape) > spatial else "no sample dimension"
            raise ValueError(
                f"{name}: a per-sample coverage needs one value per sample along the first dimension "
                f"of {shape} ({n}), got {cov.shape[0]} values"
            )
        cov = cov.reshape((-1,) + (1,) * (len(shape) - 1))
    if bool(cov.isnan().any()) or bool(((cov < 0) | (cov > 1)).any()):
        shown = float(cov) if cov.dim() == 0 else cov.flatten().tolist()
        raise ValueError(f"{name}: coverage must lie in [0, 1], got {shown}")
    return cov


def _threshold(score: Tensor, coverage: Tensor, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """Mask the ``round(coverage * H * W)`` lowest scores of each sample; ties broken at random."""
    h, w = shape[-2], shape[-1]
    flat = score.reshape(-1, h * w).double()
    k = torch.round(coverage.expand(shape[:-2] + (1, 1)).reshape(-1) * (h * w)).long()  # per row
    if not bool(k.any()):
        return torch.ones(shape, dtype=torch.bool)
    jitter = torch.rand(flat.shape, generator=gen, dtype=torch.float64) * 1e-9
    order = torch.argsort(flat + jitter, dim=1)
    lowest = torch.arange(h * w).unsqueeze(0) < k.unsqueeze(1)  # the k lowest ranks of each row
    masked = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, lowest)
    return (~masked).reshape(shape)


def random_mask(shape: Sequence[int], coverage: Coverage, seed: Seed = None) -> Tensor:
    """Drop each position independently with probability ``coverage`` (pixel dropout).

    Examples:
        >>> m = random_mask((4, 1, 32, 32), 0.3, seed=0)
        >>> m.dtype, round(1 - m.float().mean().item(), 1)
        (torch.bool, 0.3)
    """
    shape = _check("random_mask", shape, min_dims=1)
    cov = _coverage("random_mask", shape, coverage, spatial=0 if len(shape) == 1 else 1)
    draw = torch.rand(shape, generator=_gen(seed))
    return draw >= (float(cov) if cov.dim() == 0 else cov)


def rectangle_mask(
    shape: Sequence[int],
    coverage: Coverage,
    seed: Seed = None,
    max_size: float = 0.4,
    num_rects: int = 48,
) -> Tensor:
    """Rectangular holes: random rectangles (sides up to ``max_size`` of the image) in
    random order until ``coverage`` is reached (the last one is cut to fit).

    Examples:
        >>> m = rectangle_mask((2, 1, 64, 64), 0.25, seed=0)
        >>> [round(1 - s.float().mean().item(), 2) for s in m]
        [0.25, 0.25]
    """
    shape = _check("rectangle_mask", shape)
    cov = _coverage("rectangle_mask", shape, coverage)
    g = _gen(seed)
    h, w = shape[-2], shape[-1]
    n = math.prod(shape[:-2])
    k = num_rects
    hs = (torch.rand(n, k, generator=g) * (max_size - 0.05) + 0.05) * h
    ws = (torch.rand(n, k, generator=g) * (max_size - 0.05) + 0.05) * w
    y0 = torch.rand(n, k, generator=g) * (h - hs)
    x0 = torch.rand(n, k, generator=g) * (w - ws)
    order = torch.rand(n, k, generator=g)  # arrival time of each rectangle
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    score = torch.full((n, h, w), 2.0)
    for i in range(k):  # k is small; each step is vectorized over samples and pixels
        iny = (ys[None, :] >= y0[:, i : i + 1]) & (ys[None, :] < (y0 + hs)[:, i : i + 1])
        inx = (xs[None, :] >= x0[:, i : i + 1]) & (xs[None, :] < (x0 + ws)[:, i : i + 1])
        inside = iny[:, :, None] & inx[:, None, :]
        score = torch.where(inside, torch.minimum(score, order[:, i, None, None]), score)
    # Pixels no rectangle covers come last, ordered by distance to the nearest hole edge.
    return _threshold(score, cov, shape, g)


def stroke_mask(
    shape: Sequence[int],
    coverage: Coverage,
    seed: Seed = None,
    num_strokes: int = 4,
    num_vertices: int = 6,
) -> Tensor:
    """Free-form brush strokes (as in DeepFill v2 inpainting masks): random polylines whose
    brush width grows until ``coverage`` is reached.

    Examples:
        >>> m = stroke_mask((2, 1, 48, 48), 0.2, seed=1)
        >>> round(1 - m.float().mean().item(), 2)
        0.2
    """
    shape = _check("stroke_mask", shape)
    cov = _coverage("stroke_mask", shape, coverage)
    g = _gen(seed)
    h, w = shape[-2], shape[-1]
    n = math.prod(shape[:-2])
    s, v = num_strokes, num_vertices
    scale = float(max(h, w))
    start = torch.rand(n, s, 1, 2, generator=g) * torch.tensor([h, w])
    angle = torch.rand(n, s, v - 1, generator=g) * 2 * math.pi
    length = (torch.rand(n, s, v - 1, generator=g) * 0.25 + 0.05) * scale
    steps = torch.stack([torch.sin(angle), torch.cos(angle)], -1) * length[..., None]
    pts = torch.cat([start, start + steps.cumsum(2)], 2)  # (n, s, v, 2)
    a = pts[:, :, :-1].reshape(n, -1, 2)
    b = pts[:, :, 1:].reshape(n, -1, 2)
    width = (torch.rand(n, s, 1, generator=g) * 0.8 + 0.6).expand(n, s, v - 1).reshape(n, -1)
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5, indexing="ij"
    )
    p = torch.stack([yy, xx], -1).reshape(1, 1, -1, 2)  # (1, 1, HW, 2)
    ab = (b - a)[:, :, None]
    ap = p - a[:, :, None]
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-9)).clamp(0, 1)
    dist = (ap - t[..., None] * ab).norm(dim=-1) / width[:, :, None]  # (n, segs, HW)
    score = dist.amin(1).reshape(n, h, w)
    return _threshold(score, cov, shape, g)


def cloud_mask(
    shape: Sequence[int],
    coverage: Coverage,
    seed: Seed = None,
    smoothness: float = 3.0,
) -> Tensor:
    """Cloud-like blobs: 1/f^``smoothness`` noise thresholded to the target ``coverage``.

    Higher ``smoothness`` gives larger, rounder clouds. ``coverage`` may be one value
    per sample (e.g. clouds over 10 % of one scene and 70 % of the next).

    Examples:
        >>> m = cloud_mask((3, 1, 64, 64), 0.5, seed=0)
        >>> [round(1 - s.float().mean().item(), 2) for s in m]
        [0.5, 0.5, 0.5]
        >>> m = cloud_mask((3, 1, 64, 64), [0.1, 0.4, 0.7], seed=0)  # one coverage per sample
        >>> [round(1 - s.float().mean().item(), 2) for s in m]
        [0.1, 0.4, 0.7]
    """
    shape = _check("cloud_mask", shape)
    cov = _coverage("cloud_mask", shape, coverage)
    g = _gen(seed)
    h, w = shape[-2], shape[-1]
    n = math.prod(shape[:-2])
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    f = torch.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    amp = f ** (-smoothness / 2.0)
    amp[0, 0] = 0.0
    re = torch.randn(n, h, w // 2 + 1, generator=g)
    im = torch.randn(n, h, w // 2 + 1, generator=g)
    field = torch.fft.irfft2(torch.complex(re, im) * amp, s=(h, w))
    return _threshold(field, cov, shape, g)
