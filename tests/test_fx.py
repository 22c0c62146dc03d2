"""masknn.fx: torch.fx tracing of masknn models; the GraphModule computes what the model does."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.fx
from torch import Tensor, nn

from masknn import Masked
from masknn import nn as mnn
from masknn.functional import masked_add, masked_cat
from masknn.fx import MaskedTracer, is_masknn_module, symbolic_trace


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        mnn.PartialConv2d(3, 4, 3, padding=1),
        mnn.MaskedBatchNorm2d(4),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
    )


def _image(seed: int = 0) -> Masked:
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(2, 3, 8, 8, generator=g)
    mask = torch.rand(2, 1, 8, 8, generator=g) > 0.4
    return Masked(torch.where(mask, data, torch.nan), mask)


def _same(out: Masked, ref: Masked) -> None:
    assert isinstance(out, Masked)
    assert torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)


@pytest.mark.parametrize("train", [True, False])
def test_masked_cnn_traces_to_a_graph_of_masknn_leaves_equal_to_eager(train: bool) -> None:
    torch.manual_seed(0)
    model = _cnn().train(train)
    twin = copy.deepcopy(model)
    gm = symbolic_trace(twin)
    assert [n.op for n in gm.graph.nodes] == ["placeholder"] + ["call_module"] * 4 + ["output"]
    assert all(
        is_masknn_module(gm.get_submodule(str(n.target))) for n in gm.graph.nodes if n.op == "call_module"
    )
    for seed in range(2):
        x = _image(seed)
        xd = x.data.clone().requires_grad_()
        xt = x.data.clone().requires_grad_()
        ref, out = model(Masked(xd, x.mask)), gm(Masked(xt, x.mask))
        _same(out, ref)
        ref.data.sum().backward()
        out.data.sum().backward()
        assert xd.grad is not None and xt.grad is not None and torch.equal(xd.grad, xt.grad)
    assert torch.equal(model[1].running_mean, twin[1].running_mean)
    assert torch.equal(model[0].weight.grad, twin[0].weight.grad)


class KerasStyle(nn.Module):
    """Masking -> LSTM -> last valid step -> Dense, and a sequence-to-sequence head."""

    def __init__(self) -> None:
        super().__init__()
        self.masking = mnn.MaskFromValue(0.0)
        self.lstm = mnn.MaskedLSTM(4, 6, batch_first=True)
        self.pool = mnn.MaskedTemporalPool("last")
        self.dense = mnn.MaskedLinear(6, 3)
        self.per_step = mnn.TimeDistributedLinear(6, 2)

    def forward(self, x: Masked | Tensor) -> tuple[Masked, Masked, Tensor]:
        out, (h, _) = self.lstm(self.masking(x))
        return self.dense(self.pool(out)), self.per_step(out), h


def test_sequence_model_traces_and_equals_eager() -> None:
    torch.manual_seed(0)
    model = KerasStyle()
    gm = symbolic_trace(model)
    assert {str(n.target) for n in gm.graph.nodes if n.op == "call_module"} == {
        "masking",
        "lstm",
        "pool",
        "dense",
        "per_step",
    }
    x = torch.randn(3, 5, 4)
    x[0, 3:] = 0.0  # padding
    x[2] = 0.0  # an empty sequence
    (a, b, h), (ra, rb, rh) = gm(x), model(x)
    _same(a, ra)
    _same(b, rb)
    assert torch.equal(h, rh)


class Composite(nn.Module):
    """Python operators, masknn.functional ops by their bare name, Masked built in forward,
    attribute access, and a plain torch layer on the filled data."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = mnn.PartialConv2d(3, 3, 3, padding=1)
        self.norm = mnn.MaskedBatchNorm2d(3)
        self.plain = nn.Conv2d(6, 2, 1)
        self.scale = nn.Parameter(torch.tensor([0.5, 1.0, 2.0]).reshape(1, 3, 1, 1))

    def forward(self, x: Masked) -> tuple[Masked, Tensor]:
        y = self.norm(self.conv(x)) * self.scale
        y = y + x  # a residual: union of the masks
        z = masked_add(y.data, y.mask, x.data, x.mask)
        cat = masked_cat([z.data, y.data], [z.mask, y.mask], 1)
        rebuilt = Masked(cat.data * 2.0, cat.mask)
        return -rebuilt, self.plain(rebuilt.filled(0.0))


def test_operators_functional_ops_and_constructors_are_recorded() -> None:
    torch.manual_seed(0)
    model = Composite().eval()
    gm = symbolic_trace(model)
    functions = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    assert masked_add in functions and masked_cat in functions and Masked in functions
    x = _image()
    (out, plain), (ref, ref_plain) = gm(x), model(x)
    _same(out, ref)
    assert torch.equal(plain, ref_plain)


def test_masked_constructors_inside_forward_are_recorded() -> None:
    class FromNaN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = mnn.MaskedAvgPool2d(2)

        def forward(self, image: Tensor) -> Masked:
            return self.pool(Masked.from_nan(image))

    gm = symbolic_trace(FromNaN())
    x = _image().data
    _same(gm(x), FromNaN()(x))


def test_a_users_fx_pass_swaps_a_layer() -> None:
    torch.manual_seed(0)
    model = _cnn().eval()
    gm = symbolic_trace(model)
    for node in gm.graph.nodes:  # replace max pooling by average pooling
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), mnn.MaskedMaxPool2d):
            gm.add_submodule("avg", mnn.MaskedAvgPool2d(2))
            node.target = "avg"
    gm.graph.lint()
    gm.recompile()
    expected = nn.Sequential(*list(model)[:3], mnn.MaskedAvgPool2d(2))
    x = _image()
    _same(gm(x), expected(x))


def test_torch_fx_symbolic_trace_error_points_to_masknn_fx() -> None:
    with pytest.raises(TypeError, match=r"PartialConv2d: got a torch.fx Proxy.*masknn.fx.symbolic_trace"):
        torch.fx.symbolic_trace(_cnn())


def test_extra_leaf_modules() -> None:
    class Branchy(nn.Module):  # Python control flow on a value: fx cannot trace into it
        def forward(self, x: Masked) -> Masked:
            return x * 2.0 if bool(x.data.sum() > 0) else x

    model = nn.Sequential(mnn.Elementwise(nn.Tanh()), Branchy())
    with pytest.raises(torch.fx.proxy.TraceError):
        symbolic_trace(model)
    gm = symbolic_trace(model, leaf_modules=(Branchy,))
    x = _image()
    _same(gm(x), model(x))
    assert MaskedTracer(leaf_modules=(Branchy,)).is_leaf_module(Branchy(), "b")


def test_is_masknn_module_covers_subclasses_only() -> None:
    class MyConv(mnn.PartialConv2d):
        pass

    assert is_masknn_module(MyConv(1, 1, 3)) and is_masknn_module(mnn.MaskedLSTM(2, 2))
    assert not is_masknn_module(nn.Conv2d(1, 1, 3)) and not is_masknn_module(nn.Sequential())
