"""MaskedMultiheadAttention against nn.MultiheadAttention with key_padding_mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masknn import Masked
from masknn.nn import MaskedMultiheadAttention


@pytest.mark.parametrize("batch_first", [True, False])
def test_matches_plain_mha_with_key_padding_mask(batch_first: bool) -> None:
    torch.manual_seed(0)
    plain = nn.MultiheadAttention(8, 2, batch_first=batch_first, dtype=torch.float64)
    mha = MaskedMultiheadAttention(8, 2, batch_first=batch_first, dtype=torch.float64)
    mha.load_state_dict(plain.state_dict())
    q = torch.randn(3, 4, 8, dtype=torch.float64)
    k = torch.randn(3, 6, 8, dtype=torch.float64)
    qm = torch.rand(3, 4) > 0.3
    km = torch.rand(3, 6) > 0.4
    km[:2, 0] = True
    km[2] = False  # no valid key: PyTorch gives NaN there, masknn gives 0
    tf = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
    out, w = mha(Masked(tf(q), tf(qm)), Masked(tf(k), tf(km)), Masked(tf(k), tf(km)))
    ref, ref_w = plain(tf(q), tf(k), tf(k), key_padding_mask=~km)
    ref, out_d = tf(ref), tf(out.data)
    assert w is not None
    valid = qm.clone()
    valid[2] = False
    assert torch.equal(tf(out.mask)[..., 0], valid)
    torch.testing.assert_close(out_d[valid], ref[valid])
    torch.testing.assert_close(w[valid], ref_w[valid])
    assert bool((out_d[~valid] == 0).all()) and bool((w[~valid] == 0).all())
    assert bool(w[0][:, ~km[0]].eq(0).all())


def test_self_attention_attn_mask_and_causal() -> None:
    torch.manual_seed(0)
    mha = MaskedMultiheadAttention(4, 2, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)  # PyTorch sense: True = may not attend
    out_c, _ = mha(Masked(x, torch.ones(2, 5)), is_causal=True)
    out_a, _ = mha(Masked(x, torch.ones(2, 5)), attn_mask=causal)
    ref, _ = nn.MultiheadAttention.forward(mha, x, x, x, attn_mask=causal)
    torch.testing.assert_close(out_c.data, ref)
    torch.testing.assert_close(out_a.data, ref)
    # Per-head 3-d float mask.
    am = torch.randn(2 * 2, 5, 5, dtype=torch.float64)
    m = torch.tensor([[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out, w = mha(Masked(x, m), attn_mask=am, need_weights=True, average_attn_weights=False)
    kpm = torch.zeros(2, 5, dtype=torch.float64).masked_fill(~m, -torch.inf)
    ref, ref_w = nn.MultiheadAttention.forward(
        mha, x, x, x, attn_mask=am + kpm.repeat_interleave(2, 0).unsqueeze(1), average_attn_weights=False
    )
    torch.testing.assert_close(out.data[m], ref[m])
    assert w is not None and w.shape == (2, 2, 5, 5)
    torch.testing.assert_close(w[0][:, m[0]], ref_w[0][:, m[0]])


def test_errors_name_the_layer() -> None:
    mha = MaskedMultiheadAttention(4, 1, batch_first=True)
    with pytest.raises(ValueError, match=r"MaskedMultiheadAttention: query \(2, 3, 4\) and key \(3, 3, 4\)"):
        mha(Masked(torch.randn(2, 3, 4)), Masked(torch.randn(3, 3, 4)), Masked(torch.randn(3, 3, 4)))
    with pytest.raises(ValueError, match=r"MaskedMultiheadAttention: .*per-feature"):
        mha(Masked(torch.randn(2, 3, 4), torch.rand(2, 3, 4) > 0.5))
