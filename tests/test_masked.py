"""The Masked carrier: validation, helpers, constructors."""

from __future__ import annotations

import copy
import io
import math
import pickle

import pytest
import torch
import torch.utils._pytree as pytree
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from masknn import Masked, as_masked


def test_bool_mask_taken_as_is() -> None:
    x = torch.randn(2, 3, 4, 4)
    m = torch.rand(2, 1, 4, 4) > 0.5
    mx = Masked(x, m)
    assert mx.mask is m and mx.data is x
    assert mx.full_mask().shape == x.shape


def test_float_mask_converted_and_bad_values_rejected() -> None:
    x = torch.randn(2, 3)
    mx = Masked(x, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert mx.mask.dtype == torch.bool
    assert mx.mask.tolist() == [[True, False, True], [False, False, True]]
    with pytest.raises(ValueError, match=r"Masked: a torch.float32 mask must hold only 0.*0.5"):
        Masked(x, torch.tensor([[1.0, 0.5, 1.0], [0.0, 0.0, 1.0]]))


@pytest.mark.parametrize(
    ("mask_shape", "message"),
    [
        ((2, 4, 4), r"mask shape \(2, 4, 4\) does not fit data shape \(2, 3, 4, 4\)"),
        ((2, 2, 4, 4), r"dimension 1 is 2, expected 3 or 1"),
        ((3, 1, 4, 4), r"dimension 0 is 3, expected 2 or 1"),
    ],
)
def test_shape_mismatch_is_a_clear_error(mask_shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Masked(torch.randn(2, 3, 4, 4), torch.ones(mask_shape, dtype=torch.bool))


def test_sequence_mask_n_t_accepted() -> None:
    mx = Masked(torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.bool))
    assert mx.mask.shape == (2, 5, 1)


def test_types_are_checked() -> None:
    with pytest.raises(TypeError, match="Masked: expected data as a torch.Tensor"):
        Masked([1.0, 2.0], None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected the mask as a torch.Tensor"):
        Masked(torch.zeros(2), [True, False])  # type: ignore[arg-type]
    packed = nn.utils.rnn.pack_padded_sequence(torch.zeros(2, 3, 1), [3, 2], batch_first=True)
    with pytest.raises(TypeError, match="PackedSequence"):
        as_masked("SomeLayer", packed)


def test_device_mismatch_is_reported() -> None:
    if not hasattr(torch, "device") or torch.device("meta") is None:
        pytest.skip("no meta device")
    with pytest.raises(ValueError, match="device"):
        Masked(torch.zeros(2), torch.ones(2, dtype=torch.bool, device="meta"))


def test_none_mask_is_all_valid_and_cheap() -> None:
    mx = Masked(torch.randn(2, 3, 4))
    assert mx.mask.shape == (1, 1, 1)
    assert bool(mx.full_mask().all())


def test_filled_is_nan_safe() -> None:
    x = torch.tensor([1.0, math.nan, math.inf, -2.0])
    mx = Masked.from_nan(x)
    assert mx.filled(7.0).tolist() == [1.0, 7.0, 7.0, -2.0]
    assert mx.canonical().data.tolist() == [1.0, 0.0, 0.0, -2.0]


def test_to_changes_data_dtype_only() -> None:
    mx = Masked(torch.randn(2, 3), torch.rand(2, 3) > 0.5).to(torch.float64)
    assert mx.data.dtype == torch.float64 and mx.mask.dtype == torch.bool


def test_is_a_namedtuple_and_passes_through_sequential() -> None:
    mx = Masked(torch.randn(2, 3), torch.rand(2, 3) > 0.5)
    data, mask = mx
    assert data is mx.data and mask is mx.mask
    assert nn.Sequential(nn.Identity())(mx) is mx
    assert mx._fields == ("data", "mask")


def test_from_value_exact_and_tolerance() -> None:
    x = torch.tensor([-9999.0, 1.0, -9998.99])
    assert Masked.from_value(x, -9999.0).mask.tolist() == [False, True, True]
    assert Masked.from_value(x, -9999.0, atol=0.1).mask.tolist() == [False, True, False]
    assert Masked.from_value(torch.tensor([math.nan, 1.0]), math.nan).mask.tolist() == [False, True]


def test_from_nan_with_and_without_inf() -> None:
    x = torch.tensor([math.nan, math.inf, 0.0])
    assert Masked.from_nan(x).mask.tolist() == [False, False, True]
    assert Masked.from_nan(x, inf=False).mask.tolist() == [False, True, True]


def test_lengths_round_trip() -> None:
    x = torch.randn(3, 5, 2)
    mx = Masked.from_lengths(x, torch.tensor([5, 0, 2]))
    assert mx.mask.shape == (3, 5, 1)
    assert mx.lengths().tolist() == [5, 0, 2]
    tf = Masked.from_lengths(x.transpose(0, 1), [5, 0, 2], batch_first=False)
    assert tf.mask.shape == (5, 3, 1)
    assert tf.lengths(batch_first=False).tolist() == [5, 0, 2]


def test_lengths_rejects_holes_unless_unchecked() -> None:
    m = torch.tensor([[True, False, True]])
    mx = Masked(torch.randn(1, 3, 2), m)
    with pytest.raises(ValueError, match="not right-padded"):
        mx.lengths()
    assert mx.lengths(check=False).tolist() == [2]


def test_from_lengths_errors() -> None:
    with pytest.raises(ValueError, match="expected 2 lengths"):
        Masked.from_lengths(torch.zeros(2, 3, 1), [1, 2, 3])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 3\]"):
        Masked.from_lengths(torch.zeros(2, 3, 1), [4, 1])
    with pytest.raises(TypeError, match="integers"):
        Masked.from_lengths(torch.zeros(2, 3, 1), torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (
            None,
            r"^Masked.from_lengths: expected lengths as a 1-d integer tensor or a sequence of ints "
            r".*got NoneType",
        ),
        ("abc", r"^Masked.from_lengths: expected lengths as .*got str"),
        (3, r"^Masked.from_lengths: expected lengths as .*got int"),
        ([1.5, 2], r"^Masked.from_lengths: lengths must be integers, got 1.5 \(float\) in list"),
        ([True, 2], r"^Masked.from_lengths: lengths must be integers, got True \(bool\)"),
        (["a", 2], r"^Masked.from_lengths: lengths must be integers, got 'a' \(str\)"),
        (torch.tensor([True, False]), r"lengths must be integers, got a tensor of dtype torch.bool"),
    ],
)
def test_from_lengths_says_what_it_expected(lengths: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Masked.from_lengths(torch.zeros(2, 3, 1), lengths)  # type: ignore[arg-type]


@pytest.mark.parametrize("lengths", [[], (), torch.tensor([]), torch.zeros(0, dtype=torch.long)])
def test_from_lengths_accepts_an_empty_batch(lengths: object) -> None:
    mx = Masked.from_lengths(torch.zeros(0, 3, 2), lengths)  # type: ignore[arg-type]
    assert mx.mask.shape == (0, 3, 1) and mx.mask.dtype == torch.bool
    assert mx.lengths().tolist() == []


def test_from_lengths_accepts_ints_of_any_kind() -> None:
    import numpy as np

    want = [[True, True, False], [True, False, False]]
    for lengths in ([2, 1], (2, 1), np.array([2, 1]), [np.int64(2), torch.tensor(1)], range(2, 0, -1)):
        got = Masked.from_lengths(torch.zeros(2, 3, 1), lengths).mask[..., 0].tolist()  # type: ignore[arg-type]
        assert got == want, lengths


def test_from_padding_keras_semantics() -> None:
    x = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [2.0, 2.0]], [[math.nan, math.nan], [1.0, 1.0], [0.0, 0.0]]])
    assert Masked.from_padding(x, 0.0).mask[..., 0].tolist() == [[False, True, True], [True, True, False]]
    nan_pad = Masked.from_padding(x, math.nan).mask[..., 0].tolist()
    assert nan_pad == [[True, True, True], [False, True, True]]


def test_as_masked_names_the_layer_for_a_bad_mask_in_a_plain_tuple() -> None:
    # Regression: a (data, mask) tuple rebuilt by a tracer was validated as "Masked".
    with pytest.raises(ValueError, match=r"^SomeLayer: mask shape \(2, 4\) does not fit data shape \(2, 3\)"):
        as_masked("SomeLayer", (torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool)))
    out = as_masked("SomeLayer", (torch.zeros(2, 3), torch.tensor([[1.0], [0.0]])))
    assert out.mask.dtype == torch.bool and out.mask.shape == (2, 1)


def test_a_recurrent_layers_output_and_state_reaching_a_layer_is_explained() -> None:
    from masknn.nn import MaskedGRU, MaskedLinear, MaskedLSTM

    x = Masked.from_lengths(torch.randn(2, 4, 3), [4, 2])
    for rnn in (MaskedLSTM(3, 5, batch_first=True), MaskedGRU(3, 5, batch_first=True)):
        with pytest.raises(
            TypeError, match=r"^MaskedLinear: .*got tuple of 2 items \(Masked, .*\(output, state\).*"
        ):
            MaskedLinear(5, 2)(rnn(x))
    # nn.Sequential(MaskedLSTM, ...) is where it happens.
    with pytest.raises(TypeError, match=r"recurrent layer \(MaskedLSTM, MaskedGRU, MaskedRNN\) returns"):
        nn.Sequential(MaskedLSTM(3, 5, batch_first=True), MaskedLinear(5, 2))(x)


def test_a_plain_rnns_output_and_state_reaching_a_layer_is_explained() -> None:
    from masknn.nn import MaskedLinear

    out = nn.GRU(3, 5, batch_first=True)(torch.randn(2, 4, 3))
    with pytest.raises((TypeError, ValueError), match=r"^MaskedLinear: .*read as \(data, mask\).*nn.GRU"):
        MaskedLinear(5, 2)(out)


def test_two_masked_concatenated_as_tuples_reaching_a_layer_is_explained() -> None:
    from masknn.nn import Elementwise

    a = Masked(torch.randn(2, 3), torch.rand(2, 3) > 0.5)
    with pytest.raises(
        TypeError, match=r"^Elementwise.*got tuple of 4 items.*two Masked concatenated as tuples"
    ):
        Elementwise(nn.ReLU())(tuple(a) + tuple(a))
    with pytest.raises(TypeError, match=r"got tuple of 2 items \(Masked, Masked\): combine them first"):
        Elementwise(nn.ReLU())((a, a))
    with pytest.raises(TypeError, match=r"got list of 3 items \(int, int, int\); pass a masknn.Masked"):
        Elementwise(nn.ReLU())([1, 2, 3])


# ------------------------------------------------------------------ torch machinery


def _example() -> Masked:
    torch.manual_seed(0)
    return Masked(torch.randn(3, 2, 4), torch.rand(3, 1, 4) > 0.5)


def test_pytree_maps_over_masked_without_validating_the_leaves() -> None:
    x = _example()
    shapes = pytree.tree_map(lambda t: t.shape, x)
    assert isinstance(shapes, Masked) and shapes.data == (3, 2, 4) and shapes.mask == (3, 1, 4)
    doubled = pytree.tree_map(lambda t: t * 2, x)  # an int "mask" of 0/2: pytree does not judge
    assert isinstance(doubled, Masked) and doubled.mask.dtype == torch.int64
    leaves, spec = pytree.tree_flatten({"x": x, "y": [x]})
    assert len(leaves) == 4 and leaves[0] is x.data and leaves[1] is x.mask
    back = pytree.tree_unflatten(leaves, spec)
    assert isinstance(back["y"][0], Masked) and back["x"].data is x.data
    paths = [pytree.keystr(k) for k, _ in pytree.tree_flatten_with_path(x)[0]]
    assert paths == [".data", ".mask"]


def test_pytree_spec_serializes_under_a_stable_name() -> None:
    _, spec = pytree.tree_flatten((_example(), torch.zeros(1)))
    text = pytree.treespec_dumps(spec)
    assert "masknn.Masked" in text
    assert pytree.treespec_loads(text) == spec


def test_vmap_takes_and_returns_masked() -> None:
    x = _example()
    scale = torch.tensor([1.0, 2.0]).reshape(2, 1)

    def per_sample(m: Masked) -> Masked:
        return m * scale + m

    out = torch.func.vmap(per_sample)(x)
    ref = per_sample(x)
    assert isinstance(out, Masked)
    assert torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)


def test_torch_save_and_load_with_weights_only() -> None:
    x = _example()
    buf = io.BytesIO()
    torch.save({"batch": x, "list": [x, x.detach()]}, buf)
    buf.seek(0)
    got = torch.load(buf)  # weights_only=True is the default
    assert isinstance(got["batch"], Masked) and isinstance(got["list"][1], Masked)
    assert torch.equal(got["batch"].data, x.data) and torch.equal(got["batch"].mask, x.mask)
    buf.seek(0)
    assert isinstance(torch.load(buf, weights_only=True)["batch"], Masked)


def test_loading_never_validates() -> None:
    # What was saved loads as saved, whatever it holds (here a mask the constructor rejects).
    odd = Masked._unchecked(torch.zeros(2), torch.tensor([0.5, 1.0]))
    buf = io.BytesIO()
    torch.save(odd, buf)
    buf.seek(0)
    got = torch.load(buf)
    assert isinstance(got, Masked) and got.mask.tolist() == [0.5, 1.0]
    assert pickle.loads(pickle.dumps(odd)).mask.tolist() == [0.5, 1.0]


def test_copy_and_pickle() -> None:
    x = _example()
    for y in (copy.copy(x), copy.deepcopy(x), pickle.loads(pickle.dumps(x))):
        assert isinstance(y, Masked) and torch.equal(y.data, x.data) and torch.equal(y.mask, x.mask)
    assert copy.deepcopy(x).data is not x.data


def test_repr_and_fields() -> None:
    x = Masked(torch.zeros(1), torch.ones(1, dtype=torch.bool))
    assert repr(x) == "Masked(data=tensor([0.]), mask=tensor([True]))"
    assert x._fields == ("data", "mask")


def test_passes_through_sequential_with_operators() -> None:
    from masknn.nn import Elementwise, MaskedAdd

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(Elementwise(nn.Tanh()), Elementwise(nn.ReLU()))

        def forward(self, x: Masked) -> Masked:
            out = self.body(x)
            out += x
            return out * 0.5

    x = _example()
    out = nn.Sequential(Residual(), Residual())(x)
    assert isinstance(out, Masked)
    y = MaskedAdd()(Elementwise(nn.ReLU())(Elementwise(nn.Tanh())(x)), x)
    y = Masked(y.data * 0.5, y.mask)
    z = MaskedAdd()(Elementwise(nn.ReLU())(Elementwise(nn.Tanh())(y)), y)
    assert torch.equal(out.data, z.data * 0.5) and torch.equal(out.mask, z.mask)


class _Net(nn.Module):
    """Masked in, Masked out: masknn layers and the Masked operators."""

    def __init__(self) -> None:
        super().__init__()
        from masknn.nn import Elementwise, MaskedMaxPool2d

        self.act = Elementwise(nn.ReLU())
        self.pool = MaskedMaxPool2d(2)
        self.scale = nn.Parameter(torch.tensor([0.5, 2.0]).reshape(1, 2, 1, 1))

    def forward(self, x: Masked, y: Masked) -> Masked:
        return self.pool(self.act(x * self.scale + y) - 1.0)


def _images(seed: int) -> tuple[Masked, Masked]:
    g = torch.Generator().manual_seed(seed)
    x = Masked(torch.randn(2, 2, 6, 6, generator=g), torch.rand(2, 1, 6, 6, generator=g) > 0.4)
    y = Masked(torch.randn(2, 2, 6, 6, generator=g), torch.rand(2, 2, 6, 6, generator=g) > 0.4)
    return x, y


@pytest.mark.compile
def test_masked_in_and_out_of_torch_compile_fullgraph() -> None:
    from torch._dynamo.testing import CompileCounter

    net = _Net()
    counter = CompileCounter()
    compiled = torch.compile(net, fullgraph=True, backend=counter)
    for seed in range(3):  # new masks of the same shape: data, not guards
        x, y = _images(seed)
        out, ref = compiled(x, y), net(x, y)
        assert isinstance(out, Masked)
        assert torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)
    assert counter.frame_count == 1


@pytest.mark.compile
def test_masked_in_and_out_of_torch_export_saved_and_loaded() -> None:
    net = _Net().eval()
    program = torch.export.export(net, _images(0))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    for seed in (1, 2):  # another mask and data
        x, y = _images(seed)
        out, ref = loaded.module()(x, y), net(x, y)
        assert isinstance(out, Masked)
        assert torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)


@settings(max_examples=60, deadline=None)
@given(t=st.integers(0, 5), data=st.data())
def test_from_lengths_round_trips_any_lengths_property(t: int, data: st.DataObject) -> None:
    """Any batch size (0 included), any lengths in [0, T], as a list, tuple or tensor."""
    lengths = data.draw(st.lists(st.integers(0, t), min_size=0, max_size=4))
    kind = data.draw(st.sampled_from(["list", "tuple", "tensor"]))
    given_lengths: object = {"list": lengths, "tuple": tuple(lengths), "tensor": torch.tensor(lengths)}[kind]
    x = torch.randn(len(lengths), t, 2)
    mx = Masked.from_lengths(x, given_lengths)  # type: ignore[arg-type]
    assert mx.mask.shape == (len(lengths), t, 1)
    assert mx.lengths().tolist() == lengths


_ITEMS = st.sampled_from(["masked", "tensor", "int", "none", "tuple"])


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(_ITEMS, min_size=0, max_size=5), as_list=st.booleans())
def test_any_sequence_reaching_a_layer_is_a_clear_error_property(kinds: list[str], as_list: bool) -> None:
    """A tuple or list that is not (data, mask) never becomes an IndexError or AttributeError."""
    m = Masked(torch.randn(2, 3), torch.rand(2, 3) > 0.5)
    make = {"masked": lambda: m, "tensor": lambda: torch.randn(2, 3), "int": lambda: 1, "none": lambda: None}
    items = [make[k]() if k in make else (torch.zeros(1), torch.zeros(1)) for k in kinds]
    seq = items if as_list else tuple(items)
    if not as_list and kinds == ["tensor", "tensor"]:
        # read as (data, mask): a float mask that is not 0/1 is refused under the layer's name
        with pytest.raises(ValueError, match=r"^SomeLayer: .*read as \(data, mask\)"):
            as_masked("SomeLayer", seq)
        return
    with pytest.raises(TypeError, match=r"^SomeLayer: expected data as a torch.Tensor, got (tuple|list) of"):
        as_masked("SomeLayer", seq)


def test_parallel_utilities_rebuild_a_masked() -> None:
    # DistributedDataParallel(device_ids=...) moves its inputs with _recursive_to, which keeps
    # a named tuple's type and turns any other tuple into a plain one: a converted model then
    # got (data, mask) as two inputs on CUDA. The same code path runs on CPU.
    from torch.distributed.utils import _recursive_to
    from torch.nn.parallel.scatter_gather import _is_namedtuple

    x = Masked(torch.randn(2, 3), torch.rand(2, 3) > 0.5)
    assert _is_namedtuple(x)
    (moved,) = _recursive_to((x,), torch.device("cpu"), False)
    (got,) = moved
    assert type(got) is Masked
    assert got.data is x.data and got.mask is x.mask
    assert x._asdict() == {"data": x.data, "mask": x.mask}
