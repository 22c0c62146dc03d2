"""The mask follows views, reshapes, permutes, indexing and channel shuffles exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from masknn import Masked
from masknn.convert.rules.shape import reshape_mask
from tests.convert._helpers import Fn, contract, masked_input, parity, run

# Pure shape functions of a (2, 4, 6, 6) tensor: applied to the mask (as 0/1 data) by the
# plain function, they give the expected output mask.
SHAPE_FNS: dict[str, Callable[[Tensor], Any]] = {
    "permute": lambda x: x.permute(0, 2, 3, 1),
    "torch.permute": lambda x: torch.permute(x, (0, 3, 1, 2)),
    "transpose": lambda x: x.transpose(1, 3),
    "movedim": lambda x: torch.movedim(x, 1, -1),
    "flatten": lambda x: torch.flatten(x, 1),
    "flatten_spatial": lambda x: x.flatten(2),
    "view": lambda x: x.reshape(2, 4, 36).view(2, 2, 2, 36),
    "reshape_-1": lambda x: x.reshape(-1, 6),
    "unflatten": lambda x: x.unflatten(1, (2, 2)),
    "unsqueeze_squeeze": lambda x: x.unsqueeze(2).squeeze(2),
    "getitem_channels": lambda x: x[:, 1:3],
    "getitem_spatial": lambda x: x[..., 2:, ::2],
    "getitem_index_tensor": lambda x: x[:, torch.tensor([3, 0])],
    "narrow": lambda x: x.narrow(3, 1, 4),
    "select": lambda x: x.select(1, 2),
    "flip": lambda x: x.flip(-1),
    "roll": lambda x: x.roll(2, dims=-2),
    "expand": lambda x: x[:, :, :1].expand(2, 4, 5, 6),
    "repeat": lambda x: x.repeat(1, 2, 1, 1),
    "channel_shuffle_by_hand": lambda x: x.view(2, 2, 2, 6, 6).transpose(1, 2).contiguous().view(2, -1, 6, 6),
    "channel_shuffle": lambda x: F.channel_shuffle(x, 2),
    "nn.ChannelShuffle": lambda x: nn.ChannelShuffle(2)(x),
    "pixel_shuffle": lambda x: F.pixel_shuffle(x, 2),
    "pixel_unshuffle": lambda x: F.pixel_unshuffle(x, 2),
    "chunk": lambda x: x.chunk(2, dim=1)[1],
    "split": lambda x: torch.split(x, [1, 3], dim=1)[1],
    "unbind": lambda x: x.unbind(1)[2],
    "T_of_2d": lambda x: x[0, 0].T,
    "contiguous_clone_detach": lambda x: x.transpose(2, 3).contiguous().clone().detach(),
    "to_double": lambda x: x.to(torch.float64).float(),
}


@pytest.mark.parametrize(
    "mask_shape", [(2, 1, 6, 6), (2, 4, 6, 6), (1, 1, 6, 1)], ids=["shared", "per_channel", "broadcast"]
)
@pytest.mark.parametrize("name", list(SHAPE_FNS))
def test_mask_follows_shape_op(name: str, mask_shape: tuple[int, ...]) -> None:
    fn = SHAPE_FNS[name]
    x = masked_input((2, 4, 6, 6), mask_shape)
    out = run(Fn(lambda self, t: fn(t)), x)
    expected_mask = fn(x.full_mask().float()) > 0.5
    assert isinstance(out, Masked)
    assert torch.equal(out.full_mask(), expected_mask)
    assert torch.equal(out.data, torch.where(expected_mask, fn(x.data), 0.0))


def test_shared_mask_stays_shared_through_flatten_permute_and_shuffle() -> None:
    x = masked_input((2, 8, 5, 5))  # mask (2, 1, 5, 5)
    out = run(Fn(lambda self, t: t.permute(0, 2, 3, 1)), x)
    assert out.mask.shape == (2, 5, 5, 1)
    out = run(Fn(lambda self, t: F.channel_shuffle(t, 4)), x)
    assert out.mask.shape == (2, 1, 5, 5)
    out = run(Fn(lambda self, t: t.view(2, 4, 2, 5, 5).transpose(1, 2).reshape(2, 8, 5, 5)), x)
    assert out.mask.shape == (2, 1, 5, 5)
    pooled = run(
        Fn(lambda self, t: t.mean((2, 3), keepdim=True).flatten(1)),
        Masked(x.data, torch.ones(2, 1, 1, 1, dtype=torch.bool)),
    )
    assert pooled.mask.shape[1] in (1, 8)


def test_tuple_results_each_carry_their_mask() -> None:
    x = masked_input((2, 4, 6, 6), (2, 4, 6, 6))
    a, b = run(Fn(lambda self, t: t.chunk(2, 1)), x)
    assert torch.equal(a.full_mask(), x.full_mask()[:, :2])
    assert torch.equal(b.full_mask(), x.full_mask()[:, 2:])


def test_shape_ops_keep_the_contract_and_parity() -> None:
    def fn(self: nn.Module, t: Tensor) -> Tensor:
        t = self.conv(t)
        return t.permute(0, 2, 3, 1).reshape(2, -1, 4)[:, 3:].flatten(1)

    m = Fn(fn)
    m.conv = nn.Conv2d(3, 4, 3, padding=1)
    x = masked_input((2, 3, 6, 6))
    parity(m, x)
    contract(m, x)


def test_control_flow_on_shapes_and_metadata() -> None:
    def fn(self: nn.Module, t: Tensor) -> Tensor:
        assert isinstance(t, torch.Tensor)
        n, c, h, w = t.shape
        if (
            t.dim() == 4
            and t.size(1) == c
            and len(t) == n
            and t.dtype == torch.float32
            and t.requires_grad is False
        ):
            z = torch.zeros_like(t)  # a factory gives a plain tensor
            assert type(z) is torch.Tensor
            noise = t.new_ones(n, c, 1, 1)
            return (t * noise).reshape(n, c, h * w)
        raise AssertionError("metadata differs")

    x = masked_input((2, 3, 4, 4))
    out = run(Fn(fn), x)
    assert out.data.shape == (2, 3, 16)
    assert torch.equal(out.full_mask(), x.full_mask().expand(2, 3, 4, 4).reshape(2, 3, 16))


def _shapes(draw: Any) -> tuple[list[int], list[int], list[int]]:
    dims = draw(st.lists(st.sampled_from([1, 2, 3, 4, 6]), min_size=1, max_size=5))
    mask = [d if draw(st.booleans()) else 1 for d in dims]
    total = 1
    for d in dims:
        total *= d
    # a random factorisation of the same size into a new shape
    new: list[int] = []
    rest = total
    while rest > 1:
        f = draw(st.sampled_from([f for f in range(1, rest + 1) if rest % f == 0]))
        new.append(f)
        rest //= f
        if len(new) > 6:
            break
    if rest > 1:
        new.append(rest)
    new += [1] * draw(st.integers(0, 2))
    order = draw(st.permutations(range(len(new))))
    return dims, mask, [new[i] for i in order]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_reshape_mask_equals_reshaping_the_expanded_mask(data: Any) -> None:
    old, mshape, new = _shapes(data.draw)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(mshape, generator=g) > 0.5
    got = reshape_mask(mask, old, new)
    assert got.dim() == len(new)
    assert all(a == b or a == 1 for a, b in zip(got.shape, new))
    assert torch.equal(got.expand(new), mask.expand(old).reshape(new))
