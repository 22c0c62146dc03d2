"""convert(): what it returns, what it keeps, inputs and outputs, errors with their place in
the model, the registry, both select paths, serialization."""

from __future__ import annotations

import copy
import io
from collections import OrderedDict
from typing import Any, NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import masknn
from masknn import Masked
from masknn.convert import (
    ConversionError,
    convert,
    is_converted,
    register_function,
    register_module,
    unregister,
)
from masknn.functional._select import composable_only
from tests.convert._helpers import Fn, masked_input


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)) + x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 3, padding=1)
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_convert_returns_a_copy_with_the_same_class_and_state() -> None:
    net = Net()
    converted = convert(net)
    assert converted is not net and type(converted) is Net
    assert is_converted(converted) and not is_converted(net)
    assert converted.stem.weight is not net.stem.weight
    assert list(converted.state_dict()) == list(net.state_dict())
    y = net(torch.randn(2, 3, 6, 6))  # the original is untouched
    assert isinstance(y, Tensor)
    same = convert(net, inplace=True)
    assert same is net and is_converted(net)


def test_convert_is_also_the_top_level_name() -> None:
    assert masknn.convert is convert
    assert masknn.convert.register_module is register_module  # type: ignore[attr-defined]


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="nn.Module"):
        convert(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already converted"):
        convert(convert(Net()))
    with pytest.raises(ValueError, match="linear_mode"):
        convert(Net(), linear_mode="mean")
    with pytest.raises(TypeError, match="floating"):
        convert(Net())(
            Masked(torch.ones(2, 3, 4, 4, dtype=torch.long), torch.ones(2, 1, 4, 4, dtype=torch.bool))
        )


def test_outputs_keep_their_structure() -> None:
    class Pair(NamedTuple):
        a: Tensor
        b: Tensor

    def fn(self: nn.Module, x: Tensor, idx: Tensor) -> Any:
        y = self.conv(x)
        return {
            "out": OrderedDict(seg=y, pooled=y.mean((2, 3))),
            "pair": Pair(y, -y),
            "list": [y * 2.0],
            "index": idx + 1,  # an integer tensor passes through as it is
            "constant": torch.ones(2),  # depends on no data: all valid
        }

    m = Fn(fn)
    m.conv = nn.Conv2d(3, 2, 1)
    out = convert(m)(masked_input((2, 3, 4, 4)), torch.arange(2))
    assert type(out["out"]) is OrderedDict and isinstance(out["out"]["seg"], Masked)
    assert type(out["pair"]) is Pair and isinstance(out["pair"].b, Masked)
    assert isinstance(out["list"], list) and isinstance(out["list"][0], Masked)
    assert torch.equal(out["index"], torch.arange(1, 3))
    assert isinstance(out["constant"], Masked) and bool(out["constant"].mask.all())


def test_plain_tensor_input_is_all_valid_and_nan_propagates_as_in_the_original() -> None:
    net = Net().eval()
    x = torch.randn(2, 3, 5, 5)
    assert torch.allclose(convert(net)(x).data, net(x), atol=1e-6)
    x[0, 0, 0, 0] = float("nan")  # valid NaN: the model sees it, as the original does
    assert bool(convert(net)(x).data[0].isnan().all())


def test_submodules_called_directly_stay_plain() -> None:
    converted = convert(Net())
    y = converted.stem(torch.randn(1, 3, 4, 4))
    assert type(y) is Tensor


def test_error_names_the_op_the_module_path_and_the_line() -> None:
    class Gate(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x if float(x.sum()) > 0 else -x

    net = Net()
    net.blocks[1].gate = Gate()
    original = Block.forward

    def forward(self: Block, x: Tensor) -> Tensor:
        y = original(self, x)
        return self.gate(y) if hasattr(self, "gate") else y

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Block, "forward", forward)
        with pytest.raises(ConversionError) as info:
            convert(net)(masked_input((2, 3, 5, 5)))
    msg = str(info.value)
    assert "Tensor.__float__" in msg or "Tensor.item" in msg
    assert "in module 'blocks.1.gate' (Gate)" in msg
    assert "test_api.py" in msg


def test_error_for_products_of_two_data_tensors() -> None:
    m = Fn(lambda s, x: torch.matmul(x.flatten(2), x.flatten(2).transpose(1, 2)))
    with pytest.raises(ConversionError, match=r"torch\.matmul.*the model's own forward"):
        convert(m)(masked_input((2, 3, 4, 4)))


def test_masknn_argument_errors_are_located() -> None:
    m = Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="bicubic"))
    with pytest.raises(ConversionError, match=r"interpolate.*refused.*bicubic|interpolate.*bicubic"):
        convert(m)(masked_input((2, 3, 4, 4)))


def test_register_function_overrides_and_unregister_restores() -> None:
    calls = []

    @register_function(torch.sigmoid)
    def _(x: Masked) -> Masked:
        calls.append(x)
        return Masked(torch.where(x.mask, x.data.sigmoid(), 0.0) * 2.0, x.mask)

    try:
        m = Fn(lambda s, x: torch.sigmoid(x))
        x = masked_input((2, 3, 4, 4))
        out = convert(m)(x)
        assert len(calls) == 1 and isinstance(calls[0], Masked)
        torch.testing.assert_close(out.data, torch.where(x.mask, 2.0 * x.data.sigmoid(), 0.0))
    finally:
        unregister(torch.sigmoid)
    out = convert(m)(x)
    torch.testing.assert_close(out.data, torch.where(x.mask, x.data.sigmoid(), 0.0))


def test_handler_returning_a_plain_tensor_is_refused() -> None:
    register_function(torch.cumsum, lambda x, dim: torch.cumsum(x.data, dim))
    try:
        with pytest.raises(ConversionError, match="plain tensor"):
            convert(Fn(lambda s, x: torch.cumsum(x, 1)))(masked_input((2, 3, 4, 4)))
    finally:
        unregister(torch.cumsum)


def test_register_module_for_a_class_and_its_subclasses() -> None:
    class Attention(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            w = torch.softmax(x.flatten(2) @ x.flatten(2).transpose(1, 2), -1)
            return (w @ x.flatten(2)).view_as(x)

    class Sub(Attention):
        pass

    seen: list[str] = []

    @register_module(Attention)
    def _(module: Attention, x: Masked) -> Masked:
        seen.append(type(module).__name__)
        return Masked(x.data * 2.0, x.mask)

    try:
        net = nn.Sequential(nn.Conv2d(3, 3, 1), Attention(), Sub())
        converted = convert(net)
        x = masked_input((2, 3, 4, 4))
        out = converted(x)
        assert seen == ["Attention", "Sub"]
        assert torch.equal(out.full_mask(), x.full_mask())
        plain = converted[1](torch.randn(1, 3, 2, 2))  # without data: its own forward
        assert type(plain) is Tensor
        assert list(converted.state_dict()) == list(net.state_dict())
    finally:
        unregister(Attention)
    with pytest.raises(ConversionError, match=r"torch\.matmul|Tensor\.__matmul__|Tensor\.matmul"):
        convert(nn.Sequential(nn.Conv2d(3, 3, 1), Attention()))(masked_input((2, 3, 4, 4)))


def test_registry_argument_checks() -> None:
    with pytest.raises(TypeError):
        register_module(int)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        register_function(3)  # type: ignore[arg-type]


def test_both_select_paths_give_the_same_model() -> None:
    torch.manual_seed(0)
    net = Net().train()
    x = masked_input((2, 3, 6, 6))
    fast = convert(net)
    slow = copy.deepcopy(fast)
    data = x.data.clone().requires_grad_(True)
    data2 = x.data.clone().requires_grad_(True)
    a = fast(Masked(data, x.mask))
    with composable_only():
        b = slow(Masked(data2, x.mask))
    torch.testing.assert_close(a.data, b.data)
    assert torch.equal(a.full_mask(), b.full_mask())
    a.data.sum().backward()
    with composable_only():
        b.data.sum().backward()
    assert data.grad is not None and data2.grad is not None
    torch.testing.assert_close(data.grad, data2.grad)
    for (k, p), (_, q) in zip(fast.named_parameters(), slow.named_parameters()):
        assert p.grad is not None and q.grad is not None
        torch.testing.assert_close(p.grad, q.grad, msg=k)


def test_deepcopy_and_torch_save_keep_the_conversion() -> None:
    net = convert(Net().eval())
    x = masked_input((2, 3, 5, 5))
    ref = net(x)
    for other in (copy.deepcopy(net), _save_load(net)):
        assert is_converted(other)
        assert other.forward.args[0] is other  # type: ignore[attr-defined]
        out = other(x)
        assert torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)


def _save_load(model: nn.Module) -> nn.Module:
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded: nn.Module = torch.load(buf, weights_only=False)
    return loaded


def test_model_that_takes_an_instance_forward() -> None:
    net = Net().eval()
    net.forward = lambda x: Net.forward(net, x) * 2.0  # type: ignore[method-assign]
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(convert(net, inplace=True)(x).data, 2.0 * Net.forward(net, x))
