"""Masked multi-head attention: ``nn.MultiheadAttention`` with masknn masks (True = valid)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_int, check_number, shape_str
from masknn.functional._sequence import sequence_step_mask
from masknn.nn._checks import construct

__all__ = ["MaskedMultiheadAttention"]


class MaskedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` that takes and returns [`masknn.Masked`][].

    Constructor and parameters as ``torch.nn.MultiheadAttention`` (its
    ``state_dict`` loads unchanged; note ``batch_first=False`` by default, as in
    torch). ``forward(query, key=None, value=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False)`` returns
    ``(Masked output, weights or None)`` like its twin; ``key`` and ``value``
    default to ``query`` (self-attention).

    **Mask convention.** masknn masks are True = valid. PyTorch's
    ``key_padding_mask`` is the opposite (True = ignore): the key mask is
    converted at this boundary (``key_padding_mask = ~key_mask``), so do not
    pass ``key_padding_mask`` yourself. ``attn_mask``, if given, keeps PyTorch's
    meaning for this layer (bool: True = may *not* attend; float: added to the
    scores), shape ``(L, S)`` or ``(N * num_heads, L, S)``. With ``attn_mask`` or
    ``is_causal``, the key mask, the causal mask and ``attn_mask`` are merged into
    one per-head float ``attn_mask`` instead (``-inf`` = may not attend).

    Masks are per step: ``(N, L)`` or ``(N, L, 1)`` (time first with
    ``batch_first=False``). Key and value masks are combined. Masked keys get
    no weight; masked queries output exactly 0. A query with no key it may
    attend to (all keys masked) outputs 0 and is masked, never NaN. The output
    mask is the query mask, minus such queries. The keys that ``add_bias_kv`` and
    ``add_zero_attn`` append are valid keys that no mask masks, as in
    ``nn.MultiheadAttention``: with either, every valid query attends at least to
    them and stays valid. ``key_padding_mask`` is refused (a ``TypeError``): pass
    ``key=Masked(key, ~key_padding_mask)``. Masked positions receive no
    gradient (inputs are zero-filled with ``torch.where`` before projection).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> mha = MaskedMultiheadAttention(8, 2, batch_first=True)
        >>> x = Masked(torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]))
        >>> out, w = mha(x)
        >>> out.data.shape, w.shape
        (torch.Size([2, 5, 8]), torch.Size([2, 5, 5]))
        >>> bool((out.data[1] == 0).all()), bool(w[0, :3, 3:].eq(0).all())
        (True, True)
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        name = "MaskedMultiheadAttention"
        check_int(name, "embed_dim", embed_dim, 1)
        check_int(name, "num_heads", num_heads, 1)
        if embed_dim % num_heads:
            raise ValueError(f"{name}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        check_number(name, "dropout", dropout, 0.0, 1.0)
        for label, d in (("kdim", kdim), ("vdim", vdim)):
            if d is not None:
                check_int(name, label, d, 1)
        construct(
            name,
            super().__init__,
            embed_dim,
            num_heads,
            dropout,
            bias,
            add_bias_kv,
            add_zero_attn,
            kdim,
            vdim,
            batch_first,
            device,
            dtype,
        )

    def forward(  # type: ignore[override]
        self,
        query: Masked | Tensor,
        key: Masked | Tensor | None = None,
        value: Masked | Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        key_padding_mask: Tensor | None = None,
    ) -> tuple[Masked, Tensor | None]:
        name = "MaskedMultiheadAttention"
        if key_padding_mask is not None:
            raise TypeError(
                f"{name}: key_padding_mask is not taken: the key mask travels as the mask of the Masked "
                "key, True = valid (the opposite of PyTorch's key_padding_mask, True = ignore). Pass "
                "key=Masked(key, ~key_padding_mask) instead"
            )
        q = as_masked(name, query)
        k = q if key is None else as_masked(name, key)
        v = k if value is None else as_masked(name, value)
        w_ref = self.in_proj_weight if self.in_proj_weight is not None else self.q_proj_weight
        for label, t, dim in (("query", q, self.embed_dim), ("key", k, self.kdim), ("value", v, self.vdim)):
            if t.data.dim() not in (2, 3) or t.data.shape[-1] != dim:
                raise ValueError(
                    f"{name}: expected {label} (N, L, {dim}) or (L, N, {dim}) (embed_dim/kdim/vdim), "
                    f"got shape {shape_str(t.data.shape)}"
                )
            autocast = torch.is_autocast_enabled(t.data.device.type)
            if (t.data.dtype != w_ref.dtype and not autocast) or t.data.device != w_ref.device:
                raise TypeError(
                    f"{name}: {label} {shape_str(t.data.shape)} ({t.data.dtype} on {t.data.device}) and "
                    f"weights ({w_ref.dtype} on {w_ref.device}) must share dtype and device"
                )
        bf = self.batch_first
        qv = sequence_step_mask(name, q.data, q.mask, bf)  # (N, L)
        kv = sequence_step_mask(name, k.data, k.mask, bf)  # (N, S)
        vv = sequence_step_mask(name, v.data, v.mask, bf)
        if vv.shape != kv.shape:
            raise ValueError(
                f"{name}: key {shape_str(k.data.shape)} and value {shape_str(v.data.shape)} differ in N or S"
            )
        if qv.shape[0] != kv.shape[0]:
            raise ValueError(
                f"{name}: query {shape_str(q.data.shape)} and key {shape_str(k.data.shape)} "
                "differ in batch size"
            )
        kv = kv & vv
        n, lq = qv.shape
        s = kv.shape[1]

        def fill(data: Tensor, valid: Tensor) -> Tensor:
            m = valid.unsqueeze(-1) if bf else valid.t().unsqueeze(-1)
            return torch.where(m, data, torch.zeros((), dtype=data.dtype, device=data.device))

        qd, kd, vd = fill(q.data, qv), fill(k.data, kv), fill(v.data, kv)
        # add_bias_kv / add_zero_attn append keys that nn.MultiheadAttention never masks: every
        # query has a key to attend to, as in nn (a finite output from the extra keys alone).
        extra = self.bias_k is not None or self.add_zero_attn

        if attn_mask is None and not is_causal:
            if extra:
                has_key = torch.ones((n, 1), dtype=torch.bool, device=kv.device)
            else:
                has_key = kv.any(1, keepdim=True)  # (N, 1)
            # True = ignore (PyTorch); a sample without any valid key ignores nothing, then is zeroed.
            kpm = ~(kv | ~has_key)
            out, w = super().forward(
                qd,
                kd,
                vd,
                key_padding_mask=kpm,
                need_weights=need_weights,
                average_attn_weights=average_attn_weights,
            )
            row_ok = has_key.expand(n, lq)
        else:
            h = self.num_heads
            allowed = kv.view(n, 1, 1, s).expand(n, h, lq, s)
            additive: Tensor | None = None
            if is_causal:
                allowed = allowed & torch.ones(lq, s, dtype=torch.bool, device=qd.device).tril()
            if attn_mask is not None:
                if not isinstance(attn_mask, Tensor) or tuple(attn_mask.shape) not in (
                    (lq, s),
                    (n * h, lq, s),
                ):
                    got = (
                        shape_str(attn_mask.shape)
                        if isinstance(attn_mask, Tensor)
                        else type(attn_mask).__name__
                    )
                    raise ValueError(
                        f"{name}: expected attn_mask of shape {shape_str((lq, s))} or "
                        f"{shape_str((n * h, lq, s))} ((L, S) or (N*num_heads, L, S)), got {got}"
                    )
                if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
                    raise TypeError(
                        f"{name}: expected a bool (True = not allowed) or float (additive) attn_mask, "
                        f"got {attn_mask.dtype}"
                    )
                am = attn_mask if attn_mask.dim() == 2 else attn_mask.view(n, h, lq, s)
                if am.dtype == torch.bool:
                    allowed = allowed & ~am
                else:
                    allowed = allowed & (am > -torch.inf)
                    additive = am
            head_ok = allowed.any(-1)  # (N, H, L)
            safe = allowed | ~head_ok.unsqueeze(-1)
            if extra:  # nn pads attn_mask with 0 for the extra keys: they stay allowed
                head_ok = torch.ones_like(head_ok)
                safe = allowed
            zero = torch.zeros((), dtype=qd.dtype, device=qd.device)
            add = zero if additive is None else torch.where(allowed, additive.to(qd.dtype), zero)
            final = torch.where(safe, add, torch.tensor(-torch.inf, dtype=qd.dtype, device=qd.device))
            out, w = super().forward(
                qd,
                kd,
                vd,
                need_weights=need_weights,
                attn_mask=final.reshape(n * h, lq, s),
                average_attn_weights=average_attn_weights,
            )
            row_ok = head_ok.all(1)
        valid = qv & row_ok  # (N, L)
        om = valid.unsqueeze(-1) if bf else valid.t().unsqueeze(-1)
        out = torch.where(om, out, torch.zeros((), dtype=out.dtype, device=out.device))
        if w is not None:
            wm = valid.view(n, 1, lq, 1) if w.dim() == 4 else valid.view(n, lq, 1)
            w = torch.where(wm, w, torch.zeros((), dtype=w.dtype, device=w.device))
        return Masked(out, om), w
