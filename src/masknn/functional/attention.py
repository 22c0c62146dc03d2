"""Masked scaled dot-product attention: masked keys get no weight, masked queries give 0."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str, to_bool_mask
from masknn.functional._select import select

__all__ = ["masked_scaled_dot_product_attention"]


def step_mask_of(op: str, name: str, x: Tensor, mask: Tensor | None) -> Tensor:
    """A per-position mask for ``x`` ``(..., L, E)`` as bool ``(..., L)`` (broadcastable).

    Accepts ``(..., L)`` or ``(..., L, 1)``; ``None`` means all valid.
    """
    if mask is None:
        return torch.ones((1,) * (x.dim() - 1), dtype=torch.bool, device=x.device)
    if not isinstance(mask, Tensor):
        raise TypeError(f"{op}: expected {name} as a torch.Tensor, got {type(mask).__name__}")
    if mask.dim() == x.dim():
        if mask.shape[-1] != 1:
            raise ValueError(
                f"{op}: {name} {shape_str(mask.shape)} must be per position, (..., L) or (..., L, 1), "
                f"for data {shape_str(x.shape)}"
            )
        mask = mask[..., 0]
    return to_bool_mask(op, x[..., 0], mask, allow_sequence=False)


def masked_sdpa(
    op: str,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_valid: Tensor,
    k_valid: Tensor,
    attn_mask: Tensor | None,
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
) -> Masked:
    """Core of [`masked_scaled_dot_product_attention`][masknn.functional.masked_scaled_dot_product_attention]
    on validated bool masks (..., L) / (..., S)."""
    zero = torch.zeros((), dtype=q.dtype, device=q.device)
    q = select(q, q_valid.unsqueeze(-1))
    k = select(k, k_valid.unsqueeze(-1))
    v = select(v, k_valid.unsqueeze(-1))
    lq, s = q.shape[-2], k.shape[-2]
    allowed = k_valid.unsqueeze(-2)  # (..., 1, S)
    additive: Tensor | None = None
    if is_causal:
        allowed = allowed & torch.ones(lq, s, dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & attn_mask
        else:
            allowed = allowed & (attn_mask > -torch.inf)
            additive = attn_mask
    row_ok = allowed.any(-1)  # (..., L)
    # A row with no allowed key would be NaN in softmax: let it attend anywhere, then zero it.
    safe = allowed | ~row_ok.unsqueeze(-1)
    final: Tensor
    if additive is None:
        final = safe
    else:
        final = torch.where(
            safe,
            torch.where(allowed, additive.to(q.dtype), zero),
            torch.tensor(-torch.inf, dtype=q.dtype, device=q.device),
        )
    if q.dim() == 3 and k.dim() == 3 and v.dim() == 3 and torch.compiler.is_exporting():
        # Exported (torch.export, ONNX): (N, L, E) as one head, (N, 1, L, E), the layout the
        # ONNX translation takes. Not in eager: 4-d inputs pick the fused CPU kernel, which
        # has no double backward, while 3-d inputs keep the differentiable math kernel.
        out = F.scaled_dot_product_attention(
            q.unsqueeze(1),
            k.unsqueeze(1),
            v.unsqueeze(1),
            attn_mask=final.unsqueeze(-3) if final.dim() >= 3 else final,
            dropout_p=dropout_p,
            scale=scale,
        ).squeeze(1)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=final, dropout_p=dropout_p, scale=scale)
    valid = (q_valid & row_ok).unsqueeze(-1)
    return Masked(select(out, valid), valid)


def masked_scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_mask: Tensor | None = None,
    k_mask: Tensor | None = None,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Masked:
    """``F.scaled_dot_product_attention`` with masknn masks (True = valid).

    Args:
        q: ``(..., L, E)``; ``k``: ``(..., S, E)``; ``v``: ``(..., S, Ev)``.
        q_mask: ``(..., L)`` or ``(..., L, 1)``, broadcastable; ``None`` = all valid.
        k_mask: ``(..., S)`` or ``(..., S, 1)``; masks keys and values together.
        attn_mask: optional extra mask as in ``F.scaled_dot_product_attention``
            (bool: True = may attend, the same sense as masknn; float: added to
            the scores, ``-inf`` = may not attend).
        dropout_p: as ``F.scaled_dot_product_attention``.
        is_causal: as ``F.scaled_dot_product_attention``.
        scale: as ``F.scaled_dot_product_attention``.

    Returns:
        ``Masked`` output ``(..., L, Ev)`` with mask ``(..., L, 1)``: a query is
        valid when it is valid and has at least one key it may attend to; other
        queries output exactly 0 (never NaN, even when every key is masked).
        Masked keys get no weight, and masked positions receive no gradient.

    Examples:
        >>> import torch
        >>> q = k = v = torch.randn(2, 4, 8)
        >>> km = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
        >>> out = masked_scaled_dot_product_attention(q, k, v, km, km)
        >>> out.mask[..., 0]
        tensor([[ True,  True, False, False],
                [False, False, False, False]])
        >>> bool(out.data.isfinite().all()), bool((out.data[1] == 0).all())
        (True, True)
    """
    op = "masked_scaled_dot_product_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_data(op, t)
        if t.dim() < 2:
            raise ValueError(
                f"{op}: expected {name} of at least 2 dimensions (..., L, E), got {shape_str(t.shape)}"
            )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{op}: k {shape_str(k.shape)} and v {shape_str(v.shape)} differ in length S")
    qv = step_mask_of(op, "q_mask", q, q_mask)
    kv = step_mask_of(op, "k_mask", k, k_mask)
    return masked_sdpa(op, q, k, v, qv, kv, attn_mask, dropout_p, is_causal, scale)
