"""The Masked carrier: validation, helpers, constructors."""

from __future__ import annotations

import math

import pytest
import torch
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
