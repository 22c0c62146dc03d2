"""masked_scaled_dot_product_attention against a naive float64 loop."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from masknn.functional import masked_scaled_dot_product_attention


def naive(
    q: Tensor, k: Tensor, v: Tensor, qm: Tensor, km: Tensor, allowed: Tensor | None, add: Tensor | None
) -> Tensor:
    """q (B, L, E), masks (B, L) / (B, S); allowed (L, S) bool; add (L, S) float."""
    out = torch.zeros(q.shape[0], q.shape[1], v.shape[-1], dtype=q.dtype)
    for b in range(q.shape[0]):
        for i in range(q.shape[1]):
            if not qm[b, i]:
                continue
            keys = [j for j in range(k.shape[1]) if km[b, j] and (allowed is None or allowed[i, j])]
            if not keys:
                continue
            scores = torch.stack([q[b, i] @ k[b, j] / math.sqrt(q.shape[-1]) for j in keys])
            if add is not None:
                scores = scores + add[i, keys]
            w = torch.softmax(scores, 0)
            out[b, i] = sum(w[n] * v[b, j] for n, j in enumerate(keys))
    return out


@settings(max_examples=20, deadline=None)
@given(
    b=st.integers(1, 3),
    lq=st.integers(1, 5),
    s=st.integers(1, 5),
    kind=st.sampled_from(["none", "bool", "float", "causal"]),
    seed=st.integers(0, 2**16),
)
def test_matches_naive(b: int, lq: int, s: int, kind: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, lq, 4, generator=gen, dtype=torch.float64)
    k = torch.randn(b, s, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(b, s, 3, generator=gen, dtype=torch.float64)
    qm = torch.rand(b, lq, generator=gen) > 0.3
    km = torch.rand(b, s, generator=gen) > 0.4
    allowed = add = attn = None
    causal = kind == "causal"
    if kind == "bool":
        attn = allowed = torch.rand(lq, s, generator=gen) > 0.3
    elif kind == "float":
        attn = add = torch.randn(lq, s, generator=gen, dtype=torch.float64)
        attn[0, 0] = -torch.inf
        allowed = attn > -torch.inf
        add = torch.where(allowed, attn, 0)
    elif causal:
        allowed = torch.ones(lq, s, dtype=torch.bool).tril()
    bad = lambda t, m: torch.where(m.unsqueeze(-1), t, torch.nan).requires_grad_(True)  # noqa: E731
    qb, kb, vb = bad(q, qm), bad(k, km), bad(v, km)
    out = masked_scaled_dot_product_attention(
        qb, kb, vb, qm, km.unsqueeze(-1), attn_mask=attn, is_causal=causal
    )
    ref = naive(q, k, v, qm, km, allowed, add)
    torch.testing.assert_close(out.data, ref, rtol=1e-10, atol=1e-10)
    has_key = (km.unsqueeze(1) & (allowed if allowed is not None else True)).any(-1)
    assert torch.equal(out.mask[..., 0], qm & has_key)
    grads = torch.autograd.grad(out.data.sum(), [qb, kb, vb])
    for g, m in zip(grads, (qm, km, km)):
        assert bool(g.isfinite().all()) and bool((g[~m] == 0).all())


def test_all_keys_masked_gives_zero_not_nan() -> None:
    q = torch.randn(2, 3, 4)
    k = torch.full((2, 5, 4), torch.nan)
    out = masked_scaled_dot_product_attention(q, k, k, None, torch.zeros(2, 5, dtype=torch.bool))
    assert bool((out.data == 0).all()) and not bool(out.mask.any())


def test_heads_and_broadcast_masks() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    km = torch.rand(2, 1, 6) > 0.3
    km[:, :, 0] = True
    out = masked_scaled_dot_product_attention(q, k, v, k_mask=km)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=km.unsqueeze(-2))
    torch.testing.assert_close(out.data, ref)
    assert out.mask.dim() == 4 and bool(out.mask.expand(2, 3, 4, 1).all())  # a broadcast mask


def test_bad_masks() -> None:
    q = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"masked_scaled_dot_product_attention: .*\(2, 4\).*\(2, 3\)"):
        masked_scaled_dot_product_attention(q, q, q, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="per position"):
        masked_scaled_dot_product_attention(q, q, q, torch.ones(2, 3, 4, dtype=torch.bool))
