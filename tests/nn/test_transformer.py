"""MaskedTransformerEncoderLayer / MaskedTransformerEncoder against their nn twins."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from masknn import Masked
from masknn.functional._select import composable_only
from masknn.nn import MaskedTransformerEncoder, MaskedTransformerEncoderLayer
from masknn.testing import assert_no_leakage

D, H, FF = 8, 2, 16
ACTIVATIONS: dict[str, Any] = {"relu": "relu", "gelu": "gelu", "callable": torch.tanh}


def _pair(**kw: Any) -> tuple[nn.TransformerEncoderLayer, MaskedTransformerEncoderLayer]:
    torch.manual_seed(0)
    kw.setdefault("dropout", 0.0)
    kw.setdefault("dtype", torch.float64)
    plain = nn.TransformerEncoderLayer(D, H, FF, **kw)
    masked = MaskedTransformerEncoderLayer(D, H, FF, **kw)
    masked.load_state_dict(plain.state_dict())
    return plain, masked


def _holes(n: int = 4, t: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, D, dtype=torch.float64, generator=gen)
    valid = torch.rand(n, t, generator=gen) > 0.4
    valid[:, 1] = True  # every sample but the last has a valid step
    valid[-1] = False  # a fully masked sequence
    return torch.where(valid.unsqueeze(-1), x, torch.nan), valid


def _grads(module: nn.Module, x: torch.Tensor, out_fn: Callable[[torch.Tensor], torch.Tensor]) -> list[Any]:
    xi = x.detach().requires_grad_(True)
    out = out_fn(xi)
    out.backward()
    return [xi.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("bias", [True, False])
def test_twin_outputs_and_gradients(batch_first: bool, norm_first: bool, activation: str, bias: bool) -> None:
    """Valid outputs, input gradients and every parameter gradient equal nn with
    src_key_padding_mask (train mode, dropout 0, and eval), masked outputs are exactly 0."""
    plain, masked = _pair(
        batch_first=batch_first, norm_first=norm_first, activation=ACTIVATIONS[activation], bias=bias
    )
    x, valid = _holes()
    x, valid = x[:-1], valid[:-1]  # nn's gradients are checked on samples with a valid step
    tf = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
    weight = torch.randn(x.shape, dtype=x.dtype)
    v3 = valid.unsqueeze(-1)
    for train in (True, False):
        plain.train(train)
        masked.train(train)
        ref = tf(plain(tf(torch.where(v3, x, 0.0)), src_key_padding_mask=~valid))
        out = masked(Masked(tf(x), tf(valid)))
        assert torch.equal(tf(out.mask), v3)
        torch.testing.assert_close(tf(out.data)[valid], ref[valid])
        assert bool((tf(out.data)[~valid] == 0).all())
        plain.zero_grad()
        masked.zero_grad()
        g_ref = _grads(
            plain,
            x,
            lambda xi: (tf(plain(tf(torch.where(v3, xi, 0.0)), src_key_padding_mask=~valid)) * weight)[
                valid
            ].sum(),
        )
        g_out = _grads(masked, x, lambda xi: (tf(masked(Masked(tf(xi), tf(valid))).data) * weight).sum())
        for a, b in zip(g_out, g_ref):
            torch.testing.assert_close(a, b)
        assert bool((g_out[0][~valid] == 0).all())


def test_fully_padded_sequence_gives_zeros_not_nan() -> None:
    plain, masked = _pair(batch_first=True)
    plain.eval()
    masked.eval()
    x, valid = _holes()
    with torch.no_grad():  # nn's inference fast path: NaN for the fully padded sequence
        ref = plain(torch.where(valid.unsqueeze(-1), x, 0.0), src_key_padding_mask=~valid)
    assert bool(ref[-1].isnan().all())
    xi = x.detach().requires_grad_(True)
    out = masked(Masked(xi, valid))
    assert bool((out.data[-1] == 0).all()) and not bool(out.mask[-1].any())
    torch.testing.assert_close(out.data[:-1][valid[:-1]], ref[:-1][valid[:-1]])
    out.data.sum().backward()
    assert xi.grad is not None and bool(xi.grad.isfinite().all()) and bool((xi.grad[~valid] == 0).all())
    assert all(bool(p.grad.isfinite().all()) for p in masked.parameters() if p.grad is not None)
    # With no valid step anywhere in the batch.
    none = masked(Masked(x, torch.zeros_like(valid)))
    assert bool((none.data == 0).all())


def test_state_dict_keys_identical_and_load_both_ways() -> None:
    plain, masked = _pair(batch_first=True, norm_first=True, bias=False)
    assert list(plain.state_dict()) == list(masked.state_dict())
    plain.load_state_dict(masked.state_dict())
    enc_nn = nn.TransformerEncoder(
        plain, 2, norm=nn.LayerNorm(D, dtype=torch.float64), enable_nested_tensor=False
    )
    enc = MaskedTransformerEncoder(
        masked, 2, norm=nn.LayerNorm(D, dtype=torch.float64), enable_nested_tensor=False
    )
    assert list(enc_nn.state_dict()) == list(enc.state_dict())
    enc.load_state_dict(enc_nn.state_dict())
    enc_nn.load_state_dict(enc.state_dict())


def test_src_key_padding_mask_is_refused_with_the_way_to_pass_it() -> None:
    _, masked = _pair(batch_first=True)
    x = torch.randn(2, 3, D, dtype=torch.float64)
    kpm = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(
        TypeError,
        match=r"^MaskedTransformerEncoderLayer: src_key_padding_mask is not taken.*~src_key_padding_mask",
    ):
        masked(x, src_key_padding_mask=kpm)
    enc = MaskedTransformerEncoder(masked, 1, enable_nested_tensor=False)
    with pytest.raises(TypeError, match=r"^MaskedTransformerEncoder: src_key_padding_mask is not taken"):
        enc(x, src_key_padding_mask=kpm)
    with pytest.raises(TypeError, match=r"^MaskedTransformerEncoder: expected an nn.TransformerEncoderLayer"):
        MaskedTransformerEncoder(nn.Linear(2, 2), 1)  # type: ignore[arg-type]
    masked.norm2 = nn.RMSNorm(D, dtype=torch.float64)  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"^MaskedTransformerEncoderLayer: norm2 must be an nn.LayerNorm"):
        masked(x)
    _, masked = _pair(batch_first=True)
    out = masked(x)  # a plain tensor is fully valid
    assert bool(out.mask.all())


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_encoder_twin(norm: bool, causal: bool) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True, dtype=torch.float64)
    make_norm = (lambda: nn.LayerNorm(D, dtype=torch.float64)) if norm else (lambda: None)
    enc_nn = nn.TransformerEncoder(layer, 3, norm=make_norm(), enable_nested_tensor=False)
    enc = MaskedTransformerEncoder(
        MaskedTransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True, dtype=torch.float64),
        3,
        norm=make_norm(),
    )
    enc.load_state_dict(enc_nn.state_dict())
    x, valid = _holes()
    x, valid = x[:-1], valid[:-1]
    cm = torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None
    if causal:
        valid[:, 0] = True  # every valid query keeps a key under the causal mask
    for train in (True, False):
        enc_nn.train(train)
        enc.train(train)
        ref = enc_nn(torch.where(valid.unsqueeze(-1), x, 0.0), mask=cm, src_key_padding_mask=~valid)
        out = enc(Masked(x, valid), is_causal=causal)
        torch.testing.assert_close(out.data[valid], ref[valid])
        assert bool((out.data[~valid] == 0).all())
        out_m = enc(Masked(x, valid), mask=cm)
        torch.testing.assert_close(out_m.data, out.data)


def test_encoder_accepts_plain_layers_and_time_first() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, dtype=torch.float64)  # time first
    enc_nn = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    enc = MaskedTransformerEncoder(layer, 2, enable_nested_tensor=False)
    enc.load_state_dict(enc_nn.state_dict())
    x, valid = _holes()
    xt, vt = x.transpose(0, 1), valid.t()
    out = enc(Masked(xt, vt))
    assert out.data.shape == (6, 4, D) and out.mask.shape == (6, 4, 1)
    ref = enc_nn(torch.where(vt.unsqueeze(-1), xt, 0.0), src_key_padding_mask=~valid)
    torch.testing.assert_close(out.data[vt], ref[vt])
    assert bool((out.data[~vt] == 0).all())


def test_encoder_nested_inference_path_equals_the_composable_path() -> None:
    torch.manual_seed(0)
    enc = MaskedTransformerEncoder(
        MaskedTransformerEncoderLayer(D, H, FF, batch_first=True), 3, norm=nn.LayerNorm(D)
    ).eval()
    x = torch.randn(4, 7, D)
    right = Masked.from_lengths(x, [7, 3, 1, 5]).mask[..., 0]
    holes = right.clone()
    holes[0, 2] = False
    empty = right.clone()
    empty[2] = False
    for valid, nested in ((right, True), (holes, False), (empty, False)):
        xv = torch.where(valid.unsqueeze(-1), x, torch.nan)
        with torch.no_grad():
            assert enc._nested_ok(xv, valid, False) is nested
            fast = enc(Masked(xv, valid))
            with composable_only():
                assert not enc._nested_ok(xv, valid, False)
                slow = enc(Masked(xv, valid))
        torch.testing.assert_close(fast.data, slow.data)
        assert torch.equal(fast.mask, slow.mask) and bool((fast.data[~valid] == 0).all())
    assert not enc._nested_ok(x, right, False)  # gradients needed: the composable path
    enc.train()
    with torch.no_grad():
        assert not enc._nested_ok(x, right, False)


def test_encoder_inference_under_cpu_autocast_with_right_padding() -> None:
    """nn.TransformerEncoder fails here (torch.is_autocast_enabled() sees CUDA's state only, so
    it takes its nested path, whose fused kernel refuses the bfloat16 activations); the masked
    encoder takes the composable path under autocast: the output dtype of the
    differentiable path, whatever the mask, and the values of float32 to bfloat16 precision."""
    torch.manual_seed(0)
    enc = MaskedTransformerEncoder(MaskedTransformerEncoderLayer(D, H, FF, batch_first=True), 2).eval()
    x = torch.randn(3, 6, D)
    right = Masked.from_lengths(x, [6, 2, 4])
    holes = Masked(x, right.mask & (torch.arange(6) != 1).view(1, 6, 1))
    plain = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, FF, batch_first=True), 2).eval()
    plain.load_state_dict(enc.state_dict())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="expected scalar type"):  # torch's own limit
            plain(x, src_key_padding_mask=~right.mask[..., 0])
        assert not enc._nested_ok(x, right.mask[..., 0], False)
        outs = [enc(right), enc(holes)]
    with torch.no_grad():
        ref = enc(right)
    assert [o.data.dtype for o in outs] == [torch.float32, torch.float32]
    torch.testing.assert_close(outs[0].data, ref.data, atol=0.1, rtol=0.05)


def test_unbatched_input() -> None:
    _, masked = _pair(batch_first=True)
    x, valid = _holes()
    out = masked(Masked(x[0], valid[0].unsqueeze(-1)))
    assert out.data.shape == (6, D) and out.mask.shape == (6, 1)
    torch.testing.assert_close(out.data, masked(Masked(x, valid)).data[0])


def test_double_backward_with_the_math_attention_kernel() -> None:
    """PyTorch's CPU flash-attention backward is not differentiable (nn's layer has the same
    limit); under sdpa_kernel(SDPBackend.MATH) the layer has a double backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _, masked = _pair(batch_first=True)
    x, valid = _holes(2, 3)
    x = torch.where(valid.unsqueeze(-1), x, 0.0)
    valid[-1, 0] = True

    def fn(xi: torch.Tensor) -> torch.Tensor:
        return masked(Masked(xi, valid)).data

    with sdpa_kernel(SDPBackend.MATH):
        assert torch.autograd.gradgradcheck(fn, (x.requires_grad_(True),), atol=1e-5)


def _compact_reference(
    plain: nn.TransformerEncoderLayer, x: torch.Tensor, valid: torch.Tensor
) -> list[torch.Tensor]:
    """nn's layer on each sequence with its masked steps removed (no mask at all)."""
    out = []
    for i in range(x.shape[0]):
        steps = x[i][valid[i]]
        out.append(plain(steps.unsqueeze(0))[0] if steps.shape[0] else steps)
    return out


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 4),
    t=st.integers(1, 7),
    seed=st.integers(0, 2**16),
    norm_first=st.booleans(),
    layout=st.sampled_from(["right", "left", "holes"]),
)
def test_property_equals_nn_on_the_compacted_sequence(
    n: int, t: int, seed: int, norm_first: bool, layout: str
) -> None:
    """Without positions, self-attention is permutation-equivariant: masking steps anywhere
    equals running nn's layer on the sequence with those steps removed. Values at masked
    steps change nothing; fully padded samples give zeros."""
    plain, masked = _pair(batch_first=True, norm_first=norm_first)
    plain.eval()
    masked.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, D, dtype=torch.float64, generator=gen)
    lengths = torch.randint(0, t + 1, (n,), generator=gen)
    steps = torch.arange(t).unsqueeze(0)
    if layout == "right":
        valid = steps < lengths.unsqueeze(1)
    elif layout == "left":
        valid = steps >= (t - lengths).unsqueeze(1)
    else:
        valid = torch.rand(n, t, generator=gen) > 0.5
    out = masked(Masked(torch.where(valid.unsqueeze(-1), x, torch.inf), valid))
    for i, ref in enumerate(_compact_reference(plain, x, valid)):
        torch.testing.assert_close(out.data[i][valid[i]], ref)
    assert bool((out.data[~valid] == 0).all()) and bool(out.data.isfinite().all())
    junk = masked(Masked(torch.where(valid.unsqueeze(-1), x, -1e30), valid))
    assert torch.equal(junk.data, out.data)


@settings(max_examples=6, deadline=None)
@given(n=st.integers(2, 3), t=st.integers(1, 6), seed=st.integers(0, 2**16), causal=st.booleans())
def test_property_contract_random_masks(n: int, t: int, seed: int, causal: bool) -> None:
    # n >= 2: with one sample, the checker's fully masked run expands the (1, T, 1) mask to a
    # per-feature (1, T, E) mask, which the layer refuses (an encoder layer masks positions).
    gen = torch.Generator().manual_seed(seed)
    valid = torch.rand(n, t, generator=gen) > 0.5
    x = Masked(torch.randn(n, t, D, generator=gen), valid)
    torch.manual_seed(seed)
    layer = MaskedTransformerEncoderLayer(D, H, FF, dropout=0.1, batch_first=True)

    class Call(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, m: Masked) -> Masked:
            return self.layer(m, is_causal=causal)  # type: ignore[no-any-return]

    assert_no_leakage(Call(), x, perturbations=("random", math.nan, -math.inf))


@pytest.mark.compile
def test_compile_dynamic_and_new_masks_do_not_recompile() -> None:
    """torch.compile(dynamic=True) equals eager (forward and gradients); a new mask of the
    same shape, and a new length, never recompile."""
    torch.manual_seed(0)
    enc = MaskedTransformerEncoder(MaskedTransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True), 2)
    compiles = []

    def backend(gm: torch.fx.GraphModule, example: Any) -> Any:
        compiles.append(gm)
        return gm.forward

    counted = torch.compile(enc, backend=backend, dynamic=True, fullgraph=True)
    for t in (5, 6):
        for seed in range(3):
            gen = torch.Generator().manual_seed(seed)
            valid = torch.rand(3, t, generator=gen) > 0.4
            x = torch.randn(3, t, D, generator=gen)
            out = counted(Masked(x, valid))
            torch.testing.assert_close(out.data, enc(Masked(x, valid)).data)
    assert len(compiles) == 1
    compiled = torch.compile(enc, dynamic=True)
    x, valid = torch.randn(3, 5, D), torch.rand(3, 5) > 0.4
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ea = enc(Masked(xa, valid))
    ca = compiled(Masked(xb, valid))
    torch.testing.assert_close(ca.data, ea.data, rtol=1e-4, atol=1e-5)
    ea.data.square().sum().backward()
    ca.data.square().sum().backward()
    assert xa.grad is not None and xb.grad is not None
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-3, atol=1e-5)


@pytest.mark.compile
def test_export() -> None:
    torch.manual_seed(0)
    layer = MaskedTransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True).eval()
    x = Masked(torch.randn(2, 5, D), torch.rand(2, 5) > 0.4)
    prog = torch.export.export(layer, (x,))
    other = Masked(torch.randn(2, 5, D), torch.rand(2, 5) > 0.4)
    out = prog.module()(other)
    torch.testing.assert_close(out.data, layer(other).data)


def test_each_dropout_is_read_from_its_submodule() -> None:
    """nn's layer has four dropouts (self_attn.dropout, dropout, dropout1, dropout2); each is
    read where nn reads it, so changing one after construction takes effect."""
    plain, masked = _pair(batch_first=True, dropout=0.5)
    x, valid = _holes()
    x, valid = torch.where(valid.unsqueeze(-1), x, 0.0)[:-1], valid[:-1]
    names = ("self_attn", "dropout", "dropout1", "dropout2")
    for layer in (plain, masked):
        layer.self_attn.dropout = 0.0
        layer.dropout.p = layer.dropout1.p = layer.dropout2.p = 0.0
    torch.testing.assert_close(
        masked(Masked(x, valid)).data[valid], plain(x, src_key_padding_mask=~valid)[valid]
    )
    for name in names:  # each one alone changes the training output
        torch.manual_seed(0)
        if name == "self_attn":
            masked.self_attn.dropout = 0.9
        else:
            getattr(masked, name).p = 0.9
        noisy = masked(Masked(x, valid)).data
        masked.self_attn.dropout = 0.0
        masked.dropout.p = masked.dropout1.p = masked.dropout2.p = 0.0
        assert not torch.allclose(noisy, masked(Masked(x, valid)).data), name


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
def test_vmap_over_batches_of_batches() -> None:
    _, masked = _pair(batch_first=True)
    masked.eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 5, D, dtype=torch.float64, generator=gen)
    valid = torch.rand(3, 2, 5, generator=gen) > 0.4
    out = torch.func.vmap(lambda a, b: masked(Masked(a, b)).data)(x, valid)
    ref = torch.stack([masked(Masked(x[i], valid[i])).data for i in range(3)])
    torch.testing.assert_close(out, ref)
