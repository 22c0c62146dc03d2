"""``Masked.share_mask``: one mask for all bands (seed 000's multi-band imagery), so that the
guide's ``MaskChannel()`` + ``Conv2d(C + 1, ...)`` recipe works on ``Masked.from_nan`` data."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from masknn import Masked
from masknn.nn import Fill, MaskChannel, Unwrap
from masknn.testing import assert_no_leakage


def _bands(n: int = 2, c: int = 3, h: int = 5, w: int = 6, seed: int = 0) -> torch.Tensor:
    """Multi-band scenes whose bands have NaN at different pixels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    return torch.where(torch.rand(n, c, h, w, generator=g) < 0.3, torch.tensor(float("nan")), x)


def test_the_guides_recipe_works_with_a_shared_mask() -> None:
    x = Masked.from_nan(_bands())
    model = nn.Sequential(MaskChannel(), Fill("mean"), Unwrap(), nn.Conv2d(3 + 1, 8, 3, padding=1))
    # from_nan alone: one mask per band, one mask channel per band (the recipe's mismatch).
    assert x.mask.shape == (2, 3, 5, 6)
    with pytest.raises(RuntimeError, match="channels"):
        model(x)
    shared = x.share_mask(1)
    assert shared.mask.shape == (2, 1, 5, 6)
    out = model(shared)
    assert out.shape == (2, 8, 5, 6) and bool(out.isfinite().all())
    assert_no_leakage(model, shared, fully_masked_zero=False)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    data=st.data(),
)
def test_valid_where_every_slice_is_valid(shape: list[int], data: st.DataObject) -> None:
    dims = len(shape)
    # A mask with each dimension equal to the data's or 1 (as Masked accepts).
    mshape = [s if data.draw(st.booleans()) else 1 for s in shape]
    seed = data.draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(mshape, generator=g) < 0.6
    x = Masked(torch.randn(shape, generator=g), mask)
    dim = data.draw(st.integers(-dims, dims - 1))
    out = x.share_mask(dim)
    assert out.data is x.data  # the data is unchanged
    assert out.mask.dtype == torch.bool and out.mask.shape[dim] == 1
    # Valid exactly where every slice along dim is valid.
    expected = x.full_mask().all(dim=dim, keepdim=True)
    assert torch.equal(out.full_mask(), expected.expand(x.shape))
    # Never valid where the input was masked; sharing again changes nothing.
    assert not bool((out.full_mask() & ~x.full_mask()).any())
    assert torch.equal(out.share_mask(dim).mask, out.mask)


def test_several_dims_and_no_dim() -> None:
    x = Masked.from_nan(_bands())
    both = x.share_mask((1, 3))
    assert both.mask.shape == (2, 1, 5, 1)
    assert torch.equal(both.mask, x.mask.all(1, keepdim=True).all(3, keepdim=True))
    assert x.share_mask(()) is x
    assert Masked(torch.zeros(2, 3)).share_mask(1).mask.all()


@pytest.mark.parametrize(
    ("dim", "error", "match"),
    [
        (4, ValueError, "dim 4 is out of range for data of shape"),
        (-5, ValueError, "out of range"),
        ((1, -3), ValueError, "names a dimension twice"),
        (1.0, TypeError, "expected dim as an int"),
        (True, TypeError, "expected dim as an int"),
        ("1", TypeError, "expected dim as an int"),
    ],
)
def test_bad_dims_raise_naming_the_method(dim: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=f"Masked.share_mask: .*{match}"):
        Masked.from_nan(_bands()).share_mask(dim)  # type: ignore[arg-type]


@pytest.mark.compile
def test_compiles_without_recompiling_for_a_new_mask() -> None:
    torch._dynamo.reset()
    calls = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
        calls.append(1)
        return gm.forward

    fn = torch.compile(lambda x: x.share_mask(1), backend=backend, fullgraph=True)
    a = Masked.from_nan(_bands(seed=0))
    b = Masked.from_nan(_bands(seed=1))
    assert torch.equal(fn(a).mask, a.share_mask(1).mask)
    assert torch.equal(fn(b).mask, b.share_mask(1).mask)
    assert len(calls) == 1
