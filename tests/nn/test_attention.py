"""MaskedMultiheadAttention against nn.MultiheadAttention with key_padding_mask."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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


def test_bad_attn_mask_raises_a_clear_error() -> None:
    # Regression: a wrong attn_mask shape raised a RuntimeError from a view, and an integer
    # 0/1 attn_mask was silently added to the scores as a float bias.
    mha = MaskedMultiheadAttention(8, 2, batch_first=True)
    q = Masked(torch.randn(3, 6, 8), torch.rand(3, 6) > 0.3)
    with pytest.raises(ValueError, match=r"^MaskedMultiheadAttention: expected attn_mask of shape \(6, 6\)"):
        mha(q, attn_mask=torch.zeros(5, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"got \(3, 6, 6\)"):
        mha(q, attn_mask=torch.zeros(3, 6, 6))
    with pytest.raises(TypeError, match="got torch.int64"):
        mha(q, attn_mask=torch.zeros(6, 6, dtype=torch.int64))


# ---------------------------------------------- add_bias_kv / add_zero_attn: extra keys are valid
@settings(max_examples=30, deadline=None)
@given(
    keys=st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=3, max_size=3),
    queries=st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=3, max_size=3),
    bias_kv=st.booleans(),
    zero_attn=st.booleans(),
    batch_first=st.booleans(),
    attn=st.sampled_from(["none", "bool", "float"]),
)
def test_extra_keys_are_always_valid_as_in_nn(
    keys: list[list[bool]],
    queries: list[list[bool]],
    bias_kv: bool,
    zero_attn: bool,
    batch_first: bool,
    attn: str,
) -> None:
    # nn.MultiheadAttention never masks the keys that add_bias_kv / add_zero_attn append (it pads
    # key_padding_mask and attn_mask with "attend" for them): a sample whose real keys are all
    # masked still attends to them and gives a finite output. masknn gives the same, and keeps the
    # query valid; without extra keys such a query is 0 and masked (nn gives NaN there).
    if not (bias_kv or zero_attn):
        bias_kv = True
    torch.manual_seed(0)
    kw = dict(add_bias_kv=bias_kv, add_zero_attn=zero_attn, batch_first=batch_first, dtype=torch.float64)
    plain = nn.MultiheadAttention(8, 2, **kw).eval()
    mha = MaskedMultiheadAttention(8, 2, **kw).eval()
    mha.load_state_dict(plain.state_dict())
    km, qm = torch.tensor(keys), torch.tensor(queries)
    km[0] = False  # at least one sample with every real key masked
    q = torch.randn(3, 4, 8, dtype=torch.float64)
    k = torch.randn(3, 5, 8, dtype=torch.float64)
    k_holes = torch.where(km.unsqueeze(-1), k, torch.full_like(k, float("nan")))
    am: torch.Tensor | None = None
    if attn == "bool":
        am = torch.rand(4, 5, generator=torch.Generator().manual_seed(1)) > 0.6  # True = may not attend
    elif attn == "float":
        am = torch.randn(4, 5, dtype=torch.float64)
    tf = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
    out, w = mha(Masked(tf(q), tf(qm)), Masked(tf(k_holes), tf(km)), attn_mask=am)
    ref, ref_w = plain(tf(q), tf(k), tf(k), key_padding_mask=~km, attn_mask=am)
    out_d, ref = tf(out.data), tf(ref)
    assert torch.equal(tf(out.mask)[..., 0], qm)  # every valid query stays valid
    assert bool(ref[qm].isfinite().all())
    torch.testing.assert_close(out_d[qm], ref[qm])
    assert w is not None and ref_w is not None
    torch.testing.assert_close(w[qm], ref_w[qm])
    assert bool((out_d[~qm] == 0).all())


def test_key_padding_mask_is_refused_with_the_way_out() -> None:
    mha = MaskedMultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 3, 8)
    with pytest.raises(
        TypeError, match=r"MaskedMultiheadAttention: key_padding_mask is not taken.*~key_padding_mask"
    ):
        mha(x, key_padding_mask=torch.zeros(2, 3, dtype=torch.bool))
