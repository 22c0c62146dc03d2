"""Masked transformer encoder layer: ``nn.TransformerEncoderLayer`` with a validity mask.

The layer is position-wise except for self-attention, so it is made mask-aware at
three places only: the input is selected once (masked positions become 0, whatever
they held), masked keys get no attention weight (exactly 0 after the softmax), and
the output is selected once. Everything between is the plain computation of
``nn.TransformerEncoderLayer`` on every position: the masked positions compute
finite values from zeros, which reach no valid output (their keys have weight 0)
and receive no gradient (their outputs are discarded by the final select).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str, to_bool_mask
from masknn.functional._select import select

__all__ = ["masked_transformer_encoder_layer"]

Activation = str | Callable[[Tensor], Tensor]


def activation_fn(op: str, activation: Activation) -> Callable[[Tensor], Tensor]:
    """``"relu"``/``"gelu"`` or a callable, as ``nn.TransformerEncoderLayer`` takes it."""
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise ValueError(f"{op}: activation should be 'relu', 'gelu' or a callable, got {activation!r}")
    if not callable(activation):
        raise TypeError(
            f"{op}: activation should be 'relu', 'gelu' or a callable, got {type(activation).__name__}"
        )
    return activation


def prepare(
    op: str,
    src: object,
    mask: object,
    batch_first: bool,
    d_model: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[Tensor, Tensor, bool]:
    """Validate a masked sequence for an encoder layer.

    ``src`` is ``(N, T, E)`` (``(T, N, E)`` without ``batch_first``) or unbatched
    ``(T, E)``; ``mask`` is per position: ``(N, T)``/``(N, T, 1)`` (resp. time first),
    ``(T,)``/``(T, 1)`` unbatched, or broadcastable to them; ``None`` = all valid.
    Returns the data as ``(N, T, E)`` (a view, batch first), the mask as a contiguous
    bool ``(N, T)`` and whether the input was unbatched.
    """
    x = check_data(op, src)
    shape = x.shape
    if x.dim() not in (2, 3) or x.shape[-1] != d_model:
        layout = "(N, T, E)" if batch_first else "(T, N, E)"
        raise ValueError(
            f"{op}: expected src {layout} or unbatched (T, E) with E = d_model = {d_model}, "
            f"got shape {shape_str(x.shape)}"
        )
    if x.dtype != dtype or x.device != device:
        raise TypeError(
            f"{op}: src {shape_str(x.shape)} ({x.dtype} on {x.device}) and the weights ({dtype} on {device}) "
            "must share dtype and device"
        )
    if mask is None:
        valid = torch.ones(shape[:-1], dtype=torch.bool, device=x.device)
    else:
        if isinstance(mask, Tensor) and mask.dim() == x.dim():
            if mask.shape[-1] != 1:
                raise ValueError(
                    f"{op}: expected a per-position mask {_mask_layout(batch_first, x.dim())} for src "
                    f"{shape_str(shape)}, got a per-feature mask {shape_str(mask.shape)}: an encoder layer "
                    "mixes all features of a position"
                )
            mask = mask[..., 0]
        valid = to_bool_mask(op, x[..., 0], mask, allow_sequence=False).expand(shape[:-1])
    if x.dim() == 2:
        return x.unsqueeze(0), valid.unsqueeze(0).contiguous(), True
    if not batch_first:
        return x.transpose(0, 1), valid.t().contiguous(), False
    return x, valid.contiguous(), False


def _mask_layout(batch_first: bool, dim: int) -> str:
    if dim == 2:
        return "(T,) or (T, 1)"
    return "(N, T) or (N, T, 1)" if batch_first else "(T, N) or (T, N, 1)"


def attention_mask(
    op: str,
    valid: Tensor,
    nhead: int,
    src_mask: Tensor | None,
    is_causal: bool,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor | None]:
    """The mask for ``F.scaled_dot_product_attention`` and the (head, query) pairs that have a key.

    ``valid`` is ``(N, T)``; ``src_mask`` keeps PyTorch's meaning (bool: True = may *not*
    attend; float: added to the scores, ``-inf`` = may not attend), ``(T, T)`` or
    ``(N * nhead, T, T)``. Returns ``(mask, has_key)``: ``mask`` is bool (True = may
    attend) or float, broadcastable to ``(N, nhead, T, T)``; ``has_key`` broadcasts to
    ``(N, nhead, T, 1)`` and is False where a query may attend to no key in a head
    (``None`` when only the padding masks keys: then only a fully masked sequence lacks
    keys, and its outputs are all discarded). Such a query attends to every key instead
    (finite, never NaN), and its head output is then replaced by 0: the empty sum.
    """
    n, t = valid.shape
    if src_mask is None and not is_causal:
        keys = valid | ~valid.any(1, keepdim=True)
        return keys.view(n, 1, 1, t), None
    allowed = valid.view(n, 1, 1, t)
    additive: Tensor | None = None
    if src_mask is None:
        allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=valid.device).tril()
    else:
        if not isinstance(src_mask, Tensor) or tuple(src_mask.shape) not in ((t, t), (n * nhead, t, t)):
            got = shape_str(src_mask.shape) if isinstance(src_mask, Tensor) else type(src_mask).__name__
            raise ValueError(
                f"{op}: expected src_mask of shape {shape_str((t, t))} or {shape_str((n * nhead, t, t))} "
                f"((T, T) or (N*nhead, T, T)), got {got}"
            )
        if src_mask.dtype != torch.bool and not src_mask.is_floating_point():
            raise TypeError(
                f"{op}: expected a bool (True = may not attend) or float (added to the scores) src_mask, "
                f"got {src_mask.dtype}"
            )
        if src_mask.device != valid.device:
            raise ValueError(f"{op}: src_mask is on {src_mask.device} but src is on {valid.device}")
        am = src_mask if src_mask.dim() == 2 else src_mask.view(n, nhead, t, t)
        if am.dtype == torch.bool:
            allowed = allowed & ~am
        else:
            allowed = allowed & (am > -torch.inf)
            additive = am
    head_ok = allowed.any(-1)  # (N, H or 1, T)
    safe = allowed | ~head_ok.unsqueeze(-1)
    final: Tensor
    if additive is None:
        final = safe
    else:
        zero = torch.zeros((), dtype=dtype, device=valid.device)
        final = torch.where(
            safe,
            torch.where(allowed, additive.to(dtype), zero),
            torch.full((), -torch.inf, dtype=dtype, device=valid.device),
        )
    return final, head_ok.unsqueeze(-1)


def encoder_layer(
    x: Tensor,
    attn: Tensor,
    has_key: Tensor | None,
    nhead: int,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor | None,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    linear1_weight: Tensor,
    linear1_bias: Tensor | None,
    linear2_weight: Tensor,
    linear2_bias: Tensor | None,
    norm1_weight: Tensor | None,
    norm1_bias: Tensor | None,
    norm2_weight: Tensor | None,
    norm2_bias: Tensor | None,
    activation: Callable[[Tensor], Tensor],
    layer_norm_eps: float,
    norm_first: bool,
    dropout: tuple[float, float, float, float],
    training: bool,
) -> Tensor:
    """One encoder layer on ``x`` ``(N, T, E)`` (finite at masked positions) with the
    attention mask of ``attention_mask``; the output is not selected. ``dropout``:
    the probabilities on the attention weights, in the feed-forward block, and on the
    attention and feed-forward branches (``self_attn.dropout``, ``dropout``,
    ``dropout1``, ``dropout2`` of ``nn.TransformerEncoderLayer``)."""
    n, t, e = x.shape
    hd = e // nhead
    p_attn, p_ff, p_1, p_2 = dropout

    def sa_block(h: Tensor) -> Tensor:
        qkv = F.linear(h, in_proj_weight, in_proj_bias).reshape(n, t, 3, nhead, hd).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], attn_mask=attn, dropout_p=p_attn if training else 0.0
        )
        if has_key is not None:  # (N, H or 1, T, 1): a head without keys contributes the empty sum, 0
            a = torch.where(has_key, a, torch.zeros((), dtype=a.dtype, device=a.device))
        a = F.linear(a.transpose(1, 2).reshape(n, t, e), out_proj_weight, out_proj_bias)
        return F.dropout(a, p_1, training)

    def ff_block(h: Tensor) -> Tensor:
        h = F.dropout(activation(F.linear(h, linear1_weight, linear1_bias)), p_ff, training)
        return F.dropout(F.linear(h, linear2_weight, linear2_bias), p_2, training)

    def norm1(h: Tensor) -> Tensor:
        return F.layer_norm(h, (e,), norm1_weight, norm1_bias, layer_norm_eps)

    def norm2(h: Tensor) -> Tensor:
        return F.layer_norm(h, (e,), norm2_weight, norm2_bias, layer_norm_eps)

    if norm_first:
        x = x + sa_block(norm1(x))
        return x + ff_block(norm2(x))
    x = norm1(x + sa_block(x))
    return norm2(x + ff_block(x))


def check_heads(op: str, d_model: int, nhead: int) -> None:
    """``nhead`` must divide ``d_model``."""
    if not isinstance(nhead, int) or nhead < 1 or d_model % nhead:
        raise ValueError(f"{op}: nhead must be a positive divisor of d_model = {d_model}, got {nhead!r}")


def finish(out: Tensor, valid: Tensor, batch_first: bool, unbatched: bool) -> Masked:
    """Select ``out`` ``(N, T, E)`` by ``valid`` ``(N, T)`` and return it in the input's layout."""
    m = valid.unsqueeze(-1)
    out = select(out, m)
    if unbatched:
        return Masked._unchecked(out[0], m[0])
    if not batch_first:
        return Masked._unchecked(out.transpose(0, 1), m.transpose(0, 1))
    return Masked._unchecked(out, m)


def masked_transformer_encoder_layer(
    src: Tensor,
    mask: Tensor | None,
    nhead: int,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor | None,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    linear1_weight: Tensor,
    linear1_bias: Tensor | None,
    linear2_weight: Tensor,
    linear2_bias: Tensor | None,
    norm1_weight: Tensor | None,
    norm1_bias: Tensor | None,
    norm2_weight: Tensor | None,
    norm2_bias: Tensor | None,
    activation: Activation = "relu",
    layer_norm_eps: float = 1e-5,
    norm_first: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    batch_first: bool = False,
    src_mask: Tensor | None = None,
    is_causal: bool = False,
) -> Masked:
    """``nn.TransformerEncoderLayer``'s computation on a masked sequence (True = valid).

    The weights are those of ``nn.TransformerEncoderLayer`` (``self_attn.in_proj_weight``,
    ..., ``norm2.bias``); ``None`` biases for ``bias=False``. Equal to
    ``nn.TransformerEncoderLayer(src, src_key_padding_mask=~mask)`` at valid positions
    (masknn's True = valid is converted to PyTorch's True = ignore internally), with
    exactly 0 at masked positions, which no value there can change, and a finite result
    for a fully masked sequence (PyTorch gives NaN there).

    Args:
        src: ``(N, T, E)`` with ``batch_first``, else ``(T, N, E)``; or unbatched ``(T, E)``.
        mask: per position, ``(N, T)`` or ``(N, T, 1)`` (time first without
            ``batch_first``; ``(T,)`` or ``(T, 1)`` unbatched); ``None`` = all valid.
        nhead: number of attention heads.
        activation: ``"relu"``, ``"gelu"`` or a callable.
        dropout: the probability of every dropout of the layer (attention weights,
            feed-forward, both residual branches), applied when ``training``.
        src_mask: optional attention mask in **PyTorch's** sense, as
            ``nn.TransformerEncoderLayer`` takes it: bool True = may *not* attend, or
            float added to the scores; ``(T, T)`` or ``(N * nhead, T, T)``.
        is_causal: without ``src_mask``, attend to earlier positions only (a causal
            mask is built; ``nn`` needs ``src_mask`` for this). With ``src_mask`` it is
            only a hint, as in ``nn``, and ``src_mask`` is applied.

    A valid query that may attend to no key in a head (e.g. a causal mask after left
    padding) gets 0 from that head, the empty sum, before the output projection: what
    ``nn.TransformerEncoderLayer`` gives with gradients in PyTorch 2.13 (whose
    ``F.scaled_dot_product_attention`` outputs 0 for such rows), where its fused
    inference kernel gives NaN. The position stays valid.

    Returns:
        ``Masked`` output of ``src``'s shape with mask ``(N, T, 1)`` (resp. time first,
        ``(T, 1)`` unbatched): the input mask.

    Examples:
        >>> import torch
        >>> layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
        >>> w = dict(layer.named_parameters())
        >>> x = torch.randn(2, 5, 8)
        >>> valid = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
        >>> out = masked_transformer_encoder_layer(
        ...     x, valid, 2, w["self_attn.in_proj_weight"], w["self_attn.in_proj_bias"],
        ...     w["self_attn.out_proj.weight"], w["self_attn.out_proj.bias"], w["linear1.weight"],
        ...     w["linear1.bias"], w["linear2.weight"], w["linear2.bias"], w["norm1.weight"],
        ...     w["norm1.bias"], w["norm2.weight"], w["norm2.bias"], batch_first=True)
        >>> with torch.no_grad():  # PyTorch's inference path; its padding mask is True = ignore
        ...     ref = layer(x, src_key_padding_mask=~valid)
        >>> torch.allclose(out.data[0, :3], ref[0, :3], atol=1e-6), bool(ref[1].isnan().all())
        (True, True)
        >>> bool((out.data[0, 3:] == 0).all()), bool((out.data[1] == 0).all())
        (True, True)
    """
    op = "masked_transformer_encoder_layer"
    check_data(op, in_proj_weight)
    d_model = in_proj_weight.shape[-1]
    check_heads(op, d_model, nhead)
    x, valid, unbatched = prepare(
        op, src, mask, batch_first, d_model, in_proj_weight.dtype, in_proj_weight.device
    )
    attn, has_key = attention_mask(op, valid, nhead, src_mask, is_causal, x.dtype)
    out = encoder_layer(
        select(x, valid.unsqueeze(-1)),
        attn,
        has_key,
        nhead,
        in_proj_weight,
        in_proj_bias,
        out_proj_weight,
        out_proj_bias,
        linear1_weight,
        linear1_bias,
        linear2_weight,
        linear2_bias,
        norm1_weight,
        norm1_bias,
        norm2_weight,
        norm2_bias,
        activation_fn(op, activation),
        layer_norm_eps,
        norm_first,
        (dropout, dropout, dropout, dropout),
        training,
    )
    return finish(out, valid, batch_first, unbatched)
