"""Mask generators: dtype, shape, seeding, coverage within +-0.02 on average."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn import masks

GENERATORS: list[Callable[..., torch.Tensor]] = [
    masks.random_mask,
    masks.rectangle_mask,
    masks.stroke_mask,
    masks.cloud_mask,
]


@pytest.mark.parametrize("gen", GENERATORS, ids=lambda g: g.__name__)
@pytest.mark.parametrize("coverage", [0.0, 0.1, 0.3, 0.5, 0.7, 1.0])
def test_coverage_on_average(gen: Callable[..., torch.Tensor], coverage: float) -> None:
    m = gen((32, 1, 28, 28), coverage, seed=3)
    assert m.dtype == torch.bool and m.shape == (32, 1, 28, 28)
    measured = 1.0 - m.float().mean().item()
    assert abs(measured - coverage) <= 0.02


@pytest.mark.parametrize("gen", GENERATORS, ids=lambda g: g.__name__)
def test_seeded_and_reproducible(gen: Callable[..., torch.Tensor]) -> None:
    a = gen((4, 1, 20, 24), 0.4, seed=11)
    b = gen((4, 1, 20, 24), 0.4, seed=11)
    c = gen((4, 1, 20, 24), 0.4, seed=12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(gen((2, 16, 16), 0.3, seed=g1), gen((2, 16, 16), 0.3, seed=g2))


@pytest.mark.parametrize("gen", GENERATORS[1:], ids=lambda g: g.__name__)
@settings(max_examples=15, deadline=None)
@given(
    coverage=st.floats(0.0, 1.0),
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    seed=st.integers(0, 1000),
)
def test_shaped_generators_hit_coverage_per_sample(
    gen: Callable[..., torch.Tensor], coverage: float, h: int, w: int, seed: int
) -> None:
    m = gen((3, h, w), coverage, seed=seed)
    per_sample = 1.0 - m.reshape(3, -1).float().mean(1)
    assert torch.allclose(per_sample, torch.full((3,), round(coverage * h * w) / (h * w)), atol=1e-6)


def test_shapes_are_spatially_coherent() -> None:
    # Clouds and rectangles are blobs: a masked pixel's neighbours are mostly masked too,
    # unlike random dropout (where that fraction equals the coverage).
    def neighbour_agreement(m: torch.Tensor) -> float:
        masked = ~m
        both = masked[..., 1:, :] & masked[..., :-1, :]
        return both.float().sum().item() / max(masked[..., 1:, :].float().sum().item(), 1.0)

    rnd = neighbour_agreement(masks.random_mask((8, 1, 32, 32), 0.3, seed=0))
    for gen in (masks.cloud_mask, masks.rectangle_mask, masks.stroke_mask):
        assert neighbour_agreement(gen((8, 1, 32, 32), 0.3, seed=0)) > rnd + 0.3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="coverage must lie in"):
        masks.cloud_mask((2, 8, 8), 1.5)
    with pytest.raises(ValueError, match=r"expected a shape \(\.\.\., H, W\)"):
        masks.stroke_mask((8,), 0.2)


@pytest.mark.parametrize("gen", GENERATORS[1:], ids=lambda g: g.__name__)
@settings(max_examples=15, deadline=None)
@given(
    coverages=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    channels=st.integers(1, 2),
    h=st.integers(4, 24),
    w=st.integers(4, 24),
    seed=st.integers(0, 1000),
    as_tensor=st.booleans(),
)
def test_per_sample_coverage_is_exact_per_sample(
    gen: Callable[..., torch.Tensor],
    coverages: list[float],
    channels: int,
    h: int,
    w: int,
    seed: int,
    as_tensor: bool,
) -> None:
    n = len(coverages)
    cov = torch.tensor(coverages) if as_tensor else coverages
    m = gen((n, channels, h, w), cov, seed=seed)
    assert m.shape == (n, channels, h, w) and m.dtype == torch.bool
    measured = 1.0 - m.reshape(n, channels, -1).double().mean(-1)  # every channel of a sample
    expected = torch.tensor([round(c * h * w) / (h * w) for c in coverages], dtype=torch.float64)
    assert torch.allclose(measured, expected[:, None].expand(n, channels), atol=1e-9)


@pytest.mark.parametrize("gen", GENERATORS, ids=lambda g: g.__name__)
def test_a_per_sample_coverage_of_equal_values_is_the_scalar_coverage(
    gen: Callable[..., torch.Tensor],
) -> None:
    assert torch.equal(gen((5, 1, 12, 14), [0.35] * 5, seed=4), gen((5, 1, 12, 14), 0.35, seed=4))


def test_random_mask_per_sample_coverage_on_average() -> None:
    m = masks.random_mask((3, 1, 64, 64), [0.0, 0.5, 0.9], seed=0)
    measured = 1.0 - m.float().mean((1, 2, 3))
    assert measured[0] == 0.0 and abs(measured[1] - 0.5) < 0.03 and abs(measured[2] - 0.9) < 0.03
    # Sequences (N, T): one coverage per sequence.
    assert masks.random_mask((2, 100), [0.0, 1.0], seed=0).tolist() == [[True] * 100, [False] * 100]


@pytest.mark.parametrize(
    ("coverage", "error", "match"),
    [
        ([0.1, 0.2], ValueError, "one value per sample along the first dimension of .* got 2 values"),
        ([0.1, float("nan"), 0.2], ValueError, "coverage must lie in"),
        ([0.1, -0.1, 0.2], ValueError, "coverage must lie in"),
        (torch.zeros(3, 1), ValueError, "a 1-d coverage"),
        ("0.3", TypeError, "expected coverage as a number"),
        (True, TypeError, "expected coverage as a number"),
        ([0.1, "a", 0.2], TypeError, "coverage must hold numbers"),
    ],
)
def test_bad_per_sample_coverage(coverage: object, error: type[Exception], match: str) -> None:
    for gen in GENERATORS:
        with pytest.raises(error, match=f"{gen.__name__}: .*{match}"):
            gen((3, 1, 8, 8), coverage, seed=0)
    with pytest.raises(ValueError, match="no sample dimension"):
        masks.cloud_mask((8, 8), [0.3])
