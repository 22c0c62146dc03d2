"""Rows for the Keras-style sequence-model layers: the masked embedding (token ids produce the
mask) and the masked transformer encoder (``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder``
with their weights). Masks have holes in the middle of the sequences, except the one row
that checks the encoder's right-padded inference path."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as tF
from torch import Tensor, nn

import masknn.functional as F
from masknn import Masked
from masknn import nn as mnn
from tests.compat.calls import parent, unary
from tests.compat.harness import NA, Builder, CompatInfo
from tests.compat.inputs import sequence, step_mask
from tests.compat.rows_sequence import GRADGRAD_FLASH

VOCAB = 10
#: The id that masked positions hold in the checks (out of range: it must never be looked up).
BAD_ID = 1_000_003

#: nn.Embedding(max_norm=...) renormalizes the looked-up rows of its weight in place.
VMAP_RENORM = NA(
    "nn.Embedding(max_norm=...) renormalizes the looked-up rows of its unbatched weight in place "
    "(embedding_renorm_): vmap refuses it",
    "embedding_renorm_",
)


def _ids(t: int = 6, mask_zero: bool = False, with_mask: bool = True) -> Builder:
    """``(ids, mask)`` (``(ids,)`` without ``with_mask``): token ids ``(N, T)`` in ``[0, VOCAB)``
    and a step mask with holes. Masked positions hold id 0 with ``mask_zero``, else
    :data:`BAD_ID` (an out-of-range id: a check that looked it up would fail), or a random
    valid id when ``hole`` is None (the twin, numerical gradients)."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        steps = t + grow
        m = step_mask(n, steps, g)
        ids = torch.randint(1 if mask_zero else 0, VOCAB, (n, steps), generator=g)
        if mask_zero:
            ids = torch.where(m, ids, 0)
        elif hole is not None:
            ids = torch.where(m, ids, BAD_ID)
        return (ids, m) if with_mask else (ids,)

    return make


def _right_padded(f: int = 8, t: int = 6) -> Builder:
    """``(x, mask)``: ``(N, T, f)`` whose sequences are right-padded, each with at least one
    valid step (the case where MaskedTransformerEncoder's eager inference skips the padding)."""

    def make(n: int, grow: int, g: torch.Generator, hole: float | None) -> tuple[Any, ...]:
        steps = t + grow
        lengths = torch.randint(1, steps + 1, (n,), generator=g)
        lengths[0] = steps - 2
        m = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
        x = torch.randn(n, steps, f, generator=g)
        if hole is not None:
            x = torch.where(m.unsqueeze(-1), x, torch.tensor(hole))
        return x, m

    return make


def _causal_mask(t: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """PyTorch's causal attention mask ``(T, T)``: ``-inf`` above the diagonal."""
    return nn.Transformer.generate_square_subsequent_mask(t, dtype=dtype)


def _band_mask(t: int) -> Tensor:
    """A float attention mask (PyTorch's sense, added to the scores): keys more than two
    steps away get ``-inf``, nearer ones a distance penalty."""
    i = torch.arange(t)
    d = (i.unsqueeze(0) - i.unsqueeze(1)).abs().float()
    return torch.where(d > 2, torch.tensor(float("-inf")), -0.25 * d)


def _layer_weights(layer: nn.TransformerEncoderLayer) -> tuple[Tensor | None, ...]:
    sa = layer.self_attn
    return (
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
    )


def _functional_layer(layer: nn.TransformerEncoderLayer, x: Tensor, m: Tensor) -> Masked:
    return F.masked_transformer_encoder_layer(
        x, m, 2, *_layer_weights(layer), batch_first=True, src_mask=_band_mask(x.shape[1])
    )


def _plain_encoder(encoder: nn.TransformerEncoder, x: Tensor, *rest: Any) -> Tensor:
    """``nn.TransformerEncoder`` on the data alone: each layer's ``nn.TransformerEncoderLayer.forward``
    (the encoder's own forward would call the masked layers), then the final norm."""
    for layer in encoder.layers:
        x = nn.TransformerEncoderLayer.forward(layer, x)
    return x if encoder.norm is None else encoder.norm(x)


def _encoder() -> mnn.MaskedTransformerEncoder:
    layer = mnn.MaskedTransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    return mnn.MaskedTransformerEncoder(layer, 2, norm=nn.LayerNorm(8), enable_nested_tensor=False)


def _nested_encoder() -> mnn.MaskedTransformerEncoder:
    layer = mnn.MaskedTransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    return mnn.MaskedTransformerEncoder(layer, 2)


ROWS = [
    # Embedding: the ids produce the mask.
    CompatInfo(
        "MaskedEmbedding-mask_zero",
        (mnn.MaskedEmbedding,),
        lambda: mnn.MaskedEmbedding(VOCAB, 4, mask_zero=True),
        lambda layer, ids: layer(ids),
        _ids(mask_zero=True, with_mask=False),
        parent(nn.Embedding),
    ),
    CompatInfo(
        "MaskedEmbedding-Masked-padding_idx",
        (mnn.MaskedEmbedding,),
        lambda: mnn.MaskedEmbedding(VOCAB, 4, padding_idx=1),
        unary,
        _ids(),
        parent(nn.Embedding),
    ),
    CompatInfo(
        "MaskedEmbedding-max_norm",
        (mnn.MaskedEmbedding,),
        lambda: mnn.MaskedEmbedding(VOCAB, 4, max_norm=1.0, mask_zero=True),
        lambda layer, ids: layer(ids),
        _ids(mask_zero=True, with_mask=False),
        parent(nn.Embedding),
        na={"vmap": VMAP_RENORM},
    ),
    CompatInfo(
        "masked_embedding",
        (F.masked_embedding,),
        lambda: nn.Embedding(VOCAB, 4),
        lambda layer, ids, m: F.masked_embedding(ids, m, layer.weight, padding_idx=2),
        _ids(),
        lambda layer, ids, m: tF.embedding(ids, layer.weight, padding_idx=2),
    ),
    # Transformer encoder: nn's weights, masked keys get no attention weight.
    CompatInfo(
        "MaskedTransformerEncoderLayer",
        (mnn.MaskedTransformerEncoderLayer,),
        lambda: mnn.MaskedTransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True),
        unary,
        sequence(8),
        parent(nn.TransformerEncoderLayer),
        backend="inductor",
        na={"gradgrad": GRADGRAD_FLASH},
    ),
    CompatInfo(
        "MaskedTransformerEncoderLayer-norm-first-gelu-causal-time-first",
        (mnn.MaskedTransformerEncoderLayer,),
        lambda: mnn.MaskedTransformerEncoderLayer(8, 2, 16, 0.0, "gelu", norm_first=True),
        lambda layer, x, m: layer(Masked(x, m), is_causal=True),
        sequence(8, time_first=True),
        lambda layer, x, m: nn.TransformerEncoderLayer.forward(
            layer, x, src_mask=_causal_mask(x.shape[0]), is_causal=True
        ),
        batch_dims=(1, 1),
        na={"gradgrad": GRADGRAD_FLASH},
    ),
    CompatInfo(
        "masked_transformer_encoder_layer",
        (F.masked_transformer_encoder_layer,),
        lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
        _functional_layer,
        sequence(8),
        lambda layer, x, m: nn.TransformerEncoderLayer.forward(layer, x, src_mask=_band_mask(x.shape[1])),
        na={"gradgrad": GRADGRAD_FLASH},
    ),
    CompatInfo(
        "MaskedTransformerEncoder",
        (mnn.MaskedTransformerEncoder,),
        _encoder,
        unary,
        sequence(8),
        _plain_encoder,
        na={"gradgrad": GRADGRAD_FLASH},
    ),
    CompatInfo(
        # Eval mode on right-padded sequences: eager inference (export, ONNX references) takes
        # the nested-tensor path that skips the padding; the traced programs run plain ops.
        "MaskedTransformerEncoder-eval-right-padded",
        (mnn.MaskedTransformerEncoder,),
        _nested_encoder,
        unary,
        _right_padded(),
        _plain_encoder,
        train=False,
        na={"gradgrad": GRADGRAD_FLASH},
    ),
]
