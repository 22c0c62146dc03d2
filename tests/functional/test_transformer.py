"""masked_transformer_encoder_layer: the functional form, attention masks, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from masknn.functional import masked_transformer_encoder_layer


def _weights(layer: nn.TransformerEncoderLayer) -> list[Any]:
    sa = layer.self_attn
    return [
        sa.in_proj_weight,
        sa.in_proj_bias,
        sa.out_proj.weight,
        sa.out_proj.bias,
        layer.linear1.weight,
        layer.linear1.bias,
        layer.linear2.weight,
        layer.linear2.bias,
        layer.norm1.weight,
        layer.norm1.bias,
        layer.norm2.weight,
        layer.norm2.bias,
    ]


def _layer(**kw: Any) -> nn.TransformerEncoderLayer:
    torch.manual_seed(0)
    kw.setdefault("dropout", 0.0)
    kw.setdefault("batch_first", True)
    return nn.TransformerEncoderLayer(8, 2, 16, dtype=torch.float64, **kw).eval()


def _call(layer: nn.TransformerEncoderLayer, x: torch.Tensor, mask: Any, **kw: Any) -> Any:
    return masked_transformer_encoder_layer(
        x,
        mask,
        layer.self_attn.num_heads,
        *_weights(layer),
        activation=kw.pop("activation", "relu"),
        layer_norm_eps=layer.norm1.eps,
        norm_first=layer.norm_first,
        batch_first=layer.self_attn.batch_first,
        **kw,
    )


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_matches_nn_with_key_padding_mask(bias: bool, norm_first: bool) -> None:
    layer = _layer(bias=bias, norm_first=norm_first, activation="gelu")
    x = torch.randn(3, 6, 8, dtype=torch.float64)
    valid = torch.rand(3, 6) > 0.4
    valid[:, 0] = True
    out = _call(layer, x, valid, activation="gelu")
    ref = layer(x, src_key_padding_mask=~valid)
    torch.testing.assert_close(out.data[valid], ref[valid])
    assert bool((out.data[~valid] == 0).all()) and torch.equal(out.mask[..., 0], valid)


@pytest.mark.parametrize("kind", ["bool", "float", "per-head", "is_causal"])
def test_attention_masks_match_nn(kind: str) -> None:
    layer = _layer()
    n, t, h = 3, 6, 2
    x = torch.randn(n, t, 8, dtype=torch.float64)
    valid = torch.ones(n, t, dtype=torch.bool)
    valid[1, 4:] = False  # right padding: every valid query keeps a key under the causal mask
    valid[2, 2] = False  # a hole
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)  # PyTorch's sense: True = may not attend
    ref_mask: torch.Tensor
    if kind == "bool":
        src_mask, ref_mask = causal, causal
    elif kind == "float":
        src_mask = torch.randn(t, t, dtype=torch.float64).masked_fill(causal, -torch.inf)
        ref_mask = src_mask
    elif kind == "per-head":
        src_mask = torch.rand(n * h, t, t) > 0.7
        src_mask &= ~torch.eye(t, dtype=torch.bool)  # each query may attend to itself
        ref_mask = src_mask
    else:
        src_mask, ref_mask = None, causal
    out = _call(layer, x, valid, src_mask=src_mask, is_causal=kind == "is_causal")
    kpm = (
        ~valid
        if ref_mask.dtype == torch.bool
        else torch.zeros(n, t, dtype=x.dtype).masked_fill(~valid, -torch.inf)
    )
    ref = layer(x, src_mask=ref_mask, src_key_padding_mask=kpm)
    # Per head, some queries may attend to no key: both give 0 for that head (the empty sum).
    torch.testing.assert_close(out.data[valid], ref[valid])


def test_a_valid_query_without_keys_gets_the_empty_sum_not_nan() -> None:
    """A valid query that may attend to no key (left padding + causal, or a float mask):
    each head contributes 0 before the output projection, as nn's differentiable path
    does in torch 2.13; nn's fused inference kernel gives NaN."""
    layer = _layer()
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    valid = torch.tensor([[False, True, True, True]])
    am = torch.zeros(4, 4, dtype=torch.float64).masked_fill(
        torch.ones(4, 4, dtype=torch.bool).triu(1), -torch.inf
    )
    am[1, 1] = -torch.inf  # query 1 may attend to key 0 only, which is masked
    out = _call(layer, x, valid, src_mask=am)
    assert bool(out.data.isfinite().all()) and bool(out.mask[0, 1])
    h = F.layer_norm(x[0, 1] + layer.self_attn.out_proj.bias, (8,), layer.norm1.weight, layer.norm1.bias)
    expect = F.layer_norm(
        h + layer.linear2(F.relu(layer.linear1(h))), (8,), layer.norm2.weight, layer.norm2.bias
    )
    torch.testing.assert_close(out.data[0, 1], expect)
    ref = layer(x, src_mask=am.isinf(), src_key_padding_mask=~valid)
    torch.testing.assert_close(out.data[0, 1:], ref[0, 1:])
    with torch.no_grad():
        fused = layer(x, src_mask=am.isinf(), src_key_padding_mask=~valid)
    assert fused.isnan().any()  # documents why masknn does not delegate to it
    causal = _call(layer, x, valid, is_causal=True)  # query 1 keeps itself: a key
    ref = layer(x, src_mask=torch.ones(4, 4, dtype=torch.bool).triu(1), src_key_padding_mask=~valid)
    torch.testing.assert_close(causal.data[0, 1:], ref[0, 1:])


def test_time_first_and_unbatched() -> None:
    layer = _layer()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    valid = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    bf = _call(layer, x, valid)
    layer.self_attn.batch_first = False
    tf = _call(layer, x.transpose(0, 1), valid.t().unsqueeze(-1))
    assert tf.data.shape == (5, 2, 8) and tf.mask.shape == (5, 2, 1)
    torch.testing.assert_close(tf.data.transpose(0, 1), bf.data)
    one = _call(layer, x[0], valid[0])
    assert one.data.shape == (5, 8) and one.mask.shape == (5, 1)
    torch.testing.assert_close(one.data, bf.data[0])
    torch.testing.assert_close(_call(layer, x[0], valid[0].unsqueeze(-1)).data, one.data)
    full = _call(layer, x[0], None)
    assert bool(full.mask.all())


def test_errors_name_the_op() -> None:
    layer = _layer()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    op = "masked_transformer_encoder_layer"
    with pytest.raises(
        ValueError, match=rf"^{op}: expected src \(N, T, E\) or unbatched \(T, E\) with E = d_model = 8"
    ):
        _call(layer, torch.randn(2, 5, 6, dtype=torch.float64), None)
    with pytest.raises(TypeError, match=rf"^{op}: src \(2, 5, 8\) \(torch.float32 on cpu\) and the weights"):
        _call(layer, x.float(), None)
    with pytest.raises(ValueError, match=rf"^{op}: expected a per-position mask \(N, T\) or \(N, T, 1\)"):
        _call(layer, x, torch.ones(2, 5, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=rf"^{op}: mask shape \(5, 2\) does not fit data shape \(2, 5\)"):
        _call(layer, x, torch.ones(5, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=rf"^{op}: expected src_mask of shape \(5, 5\) or \(4, 5, 5\)"):
        _call(layer, x, None, src_mask=torch.zeros(4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match=rf"^{op}: expected a bool .* src_mask, got torch.int64"):
        _call(layer, x, None, src_mask=torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(
        ValueError, match=rf"^{op}: activation should be 'relu', 'gelu' or a callable, got 'tanh'"
    ):
        _call(layer, x, None, activation="tanh")
    with pytest.raises(ValueError, match=rf"^{op}: nhead must be a positive divisor of d_model = 8, got 3"):
        masked_transformer_encoder_layer(x, None, 3, *_weights(layer))
