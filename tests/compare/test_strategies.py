from __future__ import annotations

import pytest
import torch

from masknn import Masked, masks
from masknn.compare import ALL_STRATEGIES, DEFAULT_STRATEGIES, Strategy, build_model, parse_strategies


def test_parse_round_trip() -> None:
    for name in ALL_STRATEGIES:
        assert Strategy.parse(name).name == name
    assert Strategy.parse("mc+zero") == Strategy("zero", True, "plain")
    assert [s.name for s in parse_strategies(None)] == list(DEFAULT_STRATEGIES)
    assert [s.name for s in parse_strategies("all")] == list(ALL_STRATEGIES)


@pytest.mark.parametrize("bad", ["", "zero+mean", "median", "mc", "zero+mc+mc", "partial+zero"])
def test_parse_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="Strategy"):
        Strategy.parse(bad)


def test_duplicates_and_invalid_combinations() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        parse_strategies("zero,zero")
    with pytest.raises(ValueError, match="partial layers never read"):
        Strategy("zero", False, "partial")
    with pytest.raises(ValueError, match="layers"):
        Strategy("zero", False, "conv")


@pytest.mark.parametrize("kind", ["classify", "regress"])
@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_each_strategy_builds_and_trains_one_step(kind: str, name: str) -> None:
    torch.manual_seed(0)
    n, c = 4, 2
    m = masks.cloud_mask((n, 1, 8, 8), 0.4, seed=0)
    x = torch.where(m, torch.randn(n, c, 8, 8), torch.tensor(float("nan")))  # NaN in the holes
    model = build_model(kind, Strategy.parse(name), c, 1, 3, width=4, size=(8, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(Masked(x, m))
    if kind == "classify":
        assert out.shape == (n, 3)
        loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 0]))
    else:
        assert out.shape == (n, 3, 8, 8)
        loss = out.pow(2).mean()
    assert torch.isfinite(out).all(), "masked NaNs leaked into the output"
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_mask_channel_adds_one_input_channel_per_mask_channel() -> None:
    for mask_channels, expected in ((1, 3), (2, 4)):
        model = build_model("classify", Strategy.parse("zero+mc"), 2, mask_channels, 2, width=4)
        conv = model.features[0]
        assert conv.in_channels == expected


def test_partial_strategy_ignores_masked_values() -> None:
    torch.manual_seed(0)
    model = build_model("classify", Strategy.parse("partial"), 1, 1, 2, width=4, size=(8, 8)).eval()
    m = masks.cloud_mask((2, 1, 8, 8), 0.5, seed=1)
    x = torch.rand(2, 1, 8, 8)
    a = model(Masked(x, m))
    b = model(Masked(torch.where(m, x, torch.tensor(1e6)), m))
    torch.testing.assert_close(a, b)
