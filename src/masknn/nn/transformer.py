"""Masked transformer encoder: ``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` on ``Masked``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_int, check_number
from masknn.functional._select import fast_path, select
from masknn.functional.transformer import (
    activation_fn,
    attention_mask,
    check_heads,
    encoder_layer,
    finish,
    prepare,
)
from masknn.nn._checks import construct

__all__ = ["MaskedTransformerEncoder", "MaskedTransformerEncoderLayer"]

_PADDING_MASK_REFUSAL = (
    "{name}: src_key_padding_mask is not taken: the padding travels as the mask of the Masked input, "
    "True = valid (the opposite of PyTorch's key padding mask, True = ignore). Pass "
    "Masked(src, ~src_key_padding_mask) instead"
)


def _run_layer(layer: nn.TransformerEncoderLayer, x: Tensor, attn: Tensor, has_key: Tensor | None) -> Tensor:
    """The composable computation of ``layer`` on ``x`` ``(N, T, E)`` (not selected)."""
    sa = layer.self_attn
    return encoder_layer(
        x,
        attn,
        has_key,
        sa.num_heads,
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
        layer.activation,
        layer.norm1.eps,
        layer.norm_first,
        (sa.dropout, layer.dropout.p, layer.dropout1.p, layer.dropout2.p),
        layer.training,
    )


def _needs_grad(x: Tensor, module: nn.Module) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def _check_layer(name: str, layer: nn.Module) -> nn.TransformerEncoderLayer:
    if not isinstance(layer, nn.TransformerEncoderLayer):
        raise TypeError(
            f"{name}: expected an nn.TransformerEncoderLayer (or MaskedTransformerEncoderLayer), "
            f"got {type(layer).__name__}"
        )
    sa = layer.self_attn
    if not sa._qkv_same_embed_dim or sa.in_proj_weight is None:
        raise ValueError(f"{name}: the self-attention must have kdim = vdim = d_model (one in_proj_weight)")
    for label in ("norm1", "norm2"):
        norm = getattr(layer, label)
        if type(norm) is not nn.LayerNorm:
            raise TypeError(
                f"{name}: {label} must be an nn.LayerNorm, as nn.TransformerEncoderLayer builds it, "
                f"got {type(norm).__name__}"
            )
    if layer.norm1.eps != layer.norm2.eps:
        raise ValueError(
            f"{name}: norm1.eps ({layer.norm1.eps}) and norm2.eps ({layer.norm2.eps}) differ; "
            "nn.TransformerEncoderLayer sets both from layer_norm_eps"
        )
    if tuple(layer.norm1.normalized_shape) != (sa.embed_dim,):
        raise ValueError(f"{name}: norm1 must normalize over d_model = {sa.embed_dim}")
    check_heads(name, sa.embed_dim, sa.num_heads)
    return layer


class MaskedTransformerEncoderLayer(nn.TransformerEncoderLayer):
    """``nn.TransformerEncoderLayer`` that takes and returns [`masknn.Masked`][].

    Constructor, arguments (``d_model, nhead, dim_feedforward, dropout, activation``
    (``"relu"``, ``"gelu"`` or a callable), ``layer_norm_eps, batch_first, norm_first,
    bias, device, dtype``) and parameters as ``torch.nn.TransformerEncoderLayer``:
    the same ``state_dict`` keys, so checkpoints load both ways. Note
    ``batch_first=False`` by default, as in torch.

    ``forward(src, src_mask=None, is_causal=False)``: ``src`` is a ``Masked``
    ``(N, T, E)`` (``(T, N, E)`` without ``batch_first``; unbatched ``(T, E)``) with a
    per-position mask ``(N, T)`` or ``(N, T, 1)``; a plain tensor is fully valid. It
    returns a ``Masked`` of the same shape whose mask is the input's.

    **Mask convention.** masknn masks are True = valid. PyTorch's
    ``src_key_padding_mask`` is the opposite (True = ignore): the mask is converted at
    this boundary, and ``src_key_padding_mask`` itself is refused (a ``TypeError`` saying
    to pass ``Masked(src, ~src_key_padding_mask)``). ``src_mask``, if given, keeps
    PyTorch's meaning for this layer (bool: True = may *not* attend; float: added to
    the scores), shape ``(T, T)`` or ``(N * nhead, T, T)``. ``is_causal=True`` without
    ``src_mask`` builds the causal mask (PyTorch needs ``src_mask`` for it).

    Semantics: at valid positions the output equals ``nn.TransformerEncoderLayer`` with
    ``src_key_padding_mask=~mask`` (in eval, and in train with ``dropout=0``); masked
    positions output exactly 0, nothing they hold (NaN, Inf) changes a valid output,
    and they receive no gradient. A fully masked sequence gives zeros, never NaN
    (PyTorch's fused inference kernel gives NaN for it). A valid query that may attend to
    no key in a head (a causal mask after left padding) gets 0 from that head, the empty
    sum, as PyTorch 2.13's differentiable path gives (its fused kernel gives NaN).

    It runs plain differentiable ops (``torch.compile``, ``torch.export``, ``vmap`` and
    double backward see them as they are): the masked positions are zeroed once at the
    input (NaN-safe), masked keys get a False in the boolean mask of
    ``F.scaled_dot_product_attention``, and the output is zeroed once. On one CPU thread
    this costs what PyTorch's own layer costs with ``src_key_padding_mask`` (whose fused
    inference kernel is not faster there; see ``benchmarks/RESULTS.md``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> layer = MaskedTransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
        >>> x = Masked(torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]))
        >>> out = layer(x)
        >>> out.data.shape, bool(out.data.isfinite().all()), bool((out.data[1] == 0).all())
        (torch.Size([2, 5, 8]), True, True)
        >>> plain = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
        >>> plain.load_state_dict(layer.state_dict())  # the same weights, both ways
        <All keys matched successfully>
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        name = "MaskedTransformerEncoderLayer"
        check_int(name, "d_model", d_model, 1)
        check_heads(name, d_model, nhead)
        check_int(name, "dim_feedforward", dim_feedforward, 1)
        check_number(name, "dropout", dropout, 0.0, 1.0)
        check_number(name, "layer_norm_eps", layer_norm_eps, 0.0)
        activation_fn(name, activation)
        construct(
            name,
            super().__init__,
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            activation,
            layer_norm_eps,
            batch_first,
            norm_first,
            bias,
            device,
            dtype,
        )

    def forward(  # type: ignore[override]
        self,
        src: Masked | Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Masked:
        name = "MaskedTransformerEncoderLayer"
        if src_key_padding_mask is not None:
            raise TypeError(_PADDING_MASK_REFUSAL.format(name=name))
        _check_layer(name, self)
        x = as_masked(name, src)
        sa = self.self_attn
        w = sa.in_proj_weight
        bf = sa.batch_first
        xb, valid, unbatched = prepare(name, x.data, x.mask, bf, sa.embed_dim, w.dtype, w.device)
        attn, has_key = attention_mask(name, valid, sa.num_heads, src_mask, is_causal, xb.dtype)
        out = _run_layer(self, select(xb, valid.unsqueeze(-1)), attn, has_key)
        return finish(out, valid, bf, unbatched)


class MaskedTransformerEncoder(nn.TransformerEncoder):
    """``nn.TransformerEncoder`` (a stack of encoder layers) on [`masknn.Masked`][].

    Arguments and parameters as ``torch.nn.TransformerEncoder``:
    ``encoder_layer`` (a [`MaskedTransformerEncoderLayer`][masknn.nn.MaskedTransformerEncoderLayer], or a
    plain
    ``nn.TransformerEncoderLayer``, run the same masked way), ``num_layers``, ``norm``
    (optional, applied to each position: ``nn.LayerNorm``, ``nn.RMSNorm``), and
    ``enable_nested_tensor``, ``mask_check`` (kept for compatibility; see Speed). The
    ``state_dict`` keys are those of ``nn.TransformerEncoder``, so checkpoints load
    both ways.

    ``forward(src, mask=None, is_causal=None)``: ``src`` is a ``Masked`` as for
    [`MaskedTransformerEncoderLayer`][masknn.nn.MaskedTransformerEncoderLayer] (True = valid); ``mask`` is the
    attention
    mask in PyTorch's sense (True = may *not* attend), not the validity mask, and
    ``src_key_padding_mask`` is refused: pass ``Masked(src, ~src_key_padding_mask)``.
    ``is_causal=True`` without ``mask`` builds a causal mask.

    At valid positions the output equals ``nn.TransformerEncoder`` with
    ``src_key_padding_mask=~mask``; masked positions hold exactly 0 and receive no
    gradient, and a fully masked sequence gives zeros, not NaN.

    Speed: plain differentiable ops, as in
        [`MaskedTransformerEncoderLayer`][masknn.nn.MaskedTransformerEncoderLayer]; the
    masked positions are zeroed once before the first layer and once after the last
    (the layers in between never let them reach a valid position). One exception, in
    eager mode on CPU without gradients, in eval, without ``mask``, when
    ``use_nested_tensor`` holds (as PyTorch decides it) and every sequence is
    right-padded with at least one valid step: then the padded positions are skipped
    entirely with nested tensors and PyTorch's fused layer kernel, as
    ``nn.TransformerEncoder`` does. The encoder runs its layers' computation itself:
    forward hooks registered on the layers or their submodules do not run.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> layer = MaskedTransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
        >>> encoder = MaskedTransformerEncoder(layer, num_layers=2, norm=torch.nn.LayerNorm(8))
        >>> x = Masked.from_lengths(torch.randn(3, 6, 8), [6, 2, 0])
        >>> out = encoder(x)
        >>> out.mask[..., 0].sum(1), bool(out.data.isfinite().all())
        (tensor([6, 2, 0]), True)
        >>> sorted(encoder.state_dict())[:2]
        ['layers.0.linear1.bias', 'layers.0.linear1.weight']
    """

    def __init__(
        self,
        encoder_layer: nn.TransformerEncoderLayer,
        num_layers: int,
        norm: nn.Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        name = "MaskedTransformerEncoder"
        _check_layer(name, encoder_layer)
        check_int(name, "num_layers", num_layers, 1)
        if norm is not None and not isinstance(norm, nn.Module):
            raise TypeError(f"{name}: expected norm as an nn.Module or None, got {type(norm).__name__}")
        construct(name, super().__init__, encoder_layer, num_layers, norm, enable_nested_tensor, mask_check)

    def forward(  # type: ignore[override]
        self,
        src: Masked | Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Masked:
        name = "MaskedTransformerEncoder"
        if src_key_padding_mask is not None:
            raise TypeError(_PADDING_MASK_REFUSAL.format(name=name))
        layers = [_check_layer(name, layer) for layer in self.layers]
        x = as_masked(name, src)
        sa = layers[0].self_attn
        w = sa.in_proj_weight
        bf = sa.batch_first
        xb, valid, unbatched = prepare(name, x.data, x.mask, bf, sa.embed_dim, w.dtype, w.device)
        causal = bool(is_causal) and mask is None
        m3 = valid.unsqueeze(-1)
        if mask is None and not causal and self._nested_ok(x.data, valid, unbatched):
            out = self._nested_forward(select(xb, m3), valid)
        else:
            attn, has_key = attention_mask(name, valid, sa.num_heads, mask, causal, xb.dtype)
            out = select(xb, m3)
            for layer in layers:
                out = _run_layer(layer, out, attn, has_key)
        if self.norm is not None:
            y = self.norm(out)
            out = y.data if isinstance(y, Masked) else y
        return finish(out, valid, bf, unbatched)

    def _nested_forward(self, x0: Tensor, valid: Tensor) -> Tensor:
        """PyTorch's fused layer kernel on the valid steps only (zero-filled ``x0`` ``(N, T, E)``)."""
        with warnings.catch_warnings():
            # torch's "nested tensors are a prototype" warning, about its own internal use here
            warnings.filterwarnings(
                "ignore", message="The PyTorch API of nested tensors", category=UserWarning
            )
            h: Any = torch._nested_tensor_from_mask(x0, valid, mask_check=False)
        for layer in self.layers:
            h = nn.TransformerEncoderLayer.forward(layer, h)
        return h.to_padded_tensor(0.0, x0.size())

    def _nested_ok(self, data: Tensor, valid: Tensor, unbatched: bool) -> bool:
        """Whether the nested-tensor inference path applies: eager CPU, no gradient, eval,
        batch first, PyTorch's conditions (``use_nested_tensor``, the MHA fast path, no
        autocast, no hooks), every sequence right-padded with at least one valid step."""
        return (
            not unbatched
            and getattr(self, "use_nested_tensor", False)
            and self.layers[0].self_attn.batch_first
            and fast_path(data)
            and not _needs_grad(data, self)
            and torch.backends.mha.get_fastpath_enabled()
            # torch.is_autocast_enabled() without a device is CUDA's state only: under CPU autocast
            # nn.TransformerEncoder takes its nested path and its fused kernel fails on the
            # bfloat16 activations ("expected scalar type Float but found BFloat16")
            and not torch.is_autocast_enabled(data.device.type)
            and not any(m.training for m in self.layers.modules())
            and not any(m._forward_hooks or m._forward_pre_hooks for m in self.layers.modules())
            and bool(valid[:, 0].all())
            and bool(torch._nested_tensor_from_mask_left_aligned(data, valid))
        )
