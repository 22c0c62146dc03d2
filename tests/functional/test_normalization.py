"""Masked normalization against float64 loops over the valid elements, and plain torch."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import masknn.functional as MF
from masknn import Masked
from masknn import nn as mnn
from masknn.functional._select import composable_only
from masknn.functional.normalization import batch_norm_moments


def _inputs(
    per_channel: bool, seed: int = 0, shape: tuple[int, ...] = (3, 4, 5, 6)
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mshape = (shape[0], shape[1] if per_channel else 1, *shape[2:])
    m = torch.rand(mshape, generator=g) > 0.4
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2
    return torch.where(m, x, torch.nan), m


def _stats(vals: torch.Tensor) -> tuple[float, float]:
    return float(vals.mean()), float(vals.var(unbiased=False))


@pytest.mark.parametrize("per_channel", [False, True])
def test_batch_norm_matches_loop_and_updates_running_stats(per_channel: bool) -> None:
    x, m = _inputs(per_channel)
    mf = m.expand(x.shape)
    w, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    out = MF.masked_batch_norm(x, m, rm, rv, w, b, training=True, momentum=0.2, eps=1e-5)
    for c in range(4):
        vals = x[:, c][mf[:, c]]
        mean, var = _stats(vals)
        ref = (x[:, c] - mean) / (var + 1e-5) ** 0.5 * w[c] + b[c]
        torch.testing.assert_close(out.data[:, c][mf[:, c]], ref[mf[:, c]])
        assert bool((out.data[:, c][~mf[:, c]] == 0).all())
        torch.testing.assert_close(rm[c], torch.tensor(0.2 * mean, dtype=torch.float64))
        torch.testing.assert_close(
            rv[c], torch.tensor(0.8 + 0.2 * float(vals.var(unbiased=True)), dtype=torch.float64)
        )
    ev = MF.masked_batch_norm(x, m, rm, rv, w, b, training=False, eps=1e-5)
    ref = (x - rm.view(1, 4, 1, 1)) / (rv.view(1, 4, 1, 1) + 1e-5).sqrt() * w.view(1, 4, 1, 1) + b.view(
        1, 4, 1, 1
    )
    torch.testing.assert_close(ev.data[mf], ref[mf])


def test_batch_norm_empty_channel_keeps_running_stats() -> None:
    x = torch.randn(2, 3, 4, 4)
    m = torch.ones(2, 3, 4, 4, dtype=torch.bool)
    m[:, 1] = False
    m[:, 2] = False
    m[0, 2, 0, 0] = True  # one valid value: mean updated, variance not
    rm, rv = torch.full((3,), 5.0), torch.full((3,), 7.0)
    out = MF.masked_batch_norm(x, m, rm, rv, training=True, momentum=0.5)
    assert rm[1] == 5.0 and rv[1] == 7.0 and rv[2] == 7.0
    torch.testing.assert_close(rm[2], 0.5 * 5.0 + 0.5 * x[0, 2, 0, 0])
    assert bool(torch.isfinite(out.data).all()) and bool((out.data[:, 1] == 0).all())


def test_batch_norm_all_valid_matches_torch_module() -> None:
    torch.manual_seed(0)
    plain = torch.nn.BatchNorm2d(4, momentum=None)
    masked = mnn.MaskedBatchNorm2d(4, momentum=None)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 2)
        plain.bias.uniform_(-1, 1)
    masked.load_state_dict(plain.state_dict())
    for _ in range(3):
        x = torch.randn(5, 4, 6, 6) * 2 + 1
        torch.testing.assert_close(masked(Masked(x)).data, plain(x), rtol=1e-4, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(masked, name), getattr(plain, name), rtol=1e-5, atol=1e-6)
    masked.eval()
    plain.eval()
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(masked(x).data, plain(x), rtol=1e-5, atol=1e-6)
    # No running statistics: batch statistics in eval mode too.
    plain_nt = torch.nn.BatchNorm1d(3, track_running_stats=False).eval()
    masked_nt = mnn.MaskedBatchNorm1d(3, track_running_stats=False).eval()
    x = torch.randn(6, 3)
    torch.testing.assert_close(masked_nt(x).data, plain_nt(x), rtol=1e-5, atol=1e-6)


def test_half_precision_stays_finite() -> None:
    # Squares of 300 overflow float16 (max 65504): sums must run in float32.
    x = (torch.randn(4, 2, 8, 8) * 300).to(torch.float16)
    m = torch.rand(4, 1, 8, 8) > 0.3
    out = MF.masked_batch_norm(x, m, training=True)
    ref = MF.masked_batch_norm(x.float(), m, training=True)
    assert out.data.dtype == torch.float16 and bool(torch.isfinite(out.data).all())
    torch.testing.assert_close(out.data.float(), ref.data, rtol=1e-2, atol=1e-2)
    for fn in (
        lambda t: MF.masked_layer_norm(t, m, (8, 8)),
        lambda t: MF.masked_group_norm(t, m, 1),
        lambda t: MF.masked_instance_norm(t, m),
    ):
        assert bool(torch.isfinite(fn(x).data).all())
        torch.testing.assert_close(fn(x).data.float(), fn(x.float()).data, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("per_channel", [False, True])
def test_instance_group_layer_norm_match_loops(per_channel: bool) -> None:
    x, m = _inputs(per_channel, seed=3)
    mf = m.expand(x.shape)
    w, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    inst = MF.masked_instance_norm(x, m, weight=w, bias=b)
    grp = MF.masked_group_norm(x, m, 2, w, b)
    lw, lb = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    lay = MF.masked_layer_norm(x, m, (5, 6), lw, lb)
    for n, c in itertools.product(range(3), range(4)):
        sel = mf[n, c]
        if sel.any():
            mean, var = _stats(x[n, c][sel])
            ref = (x[n, c] - mean) / (var + 1e-5) ** 0.5 * w[c] + b[c]
            torch.testing.assert_close(inst.data[n, c][sel], ref[sel])
            mean, var = _stats(x[n, c][sel])
            lref = (x[n, c] - mean) / (var + 1e-5) ** 0.5 * lw + lb
            torch.testing.assert_close(lay.data[n, c][sel], lref[sel])
        assert bool((inst.data[n, c][~sel] == 0).all()) and bool((lay.data[n, c][~sel] == 0).all())
    for n, g in itertools.product(range(3), range(2)):
        xs, ms = x[n, 2 * g : 2 * g + 2], mf[n, 2 * g : 2 * g + 2]
        if ms.any():
            mean, var = _stats(xs[ms])
            ref = (xs - mean) / (var + 1e-5) ** 0.5 * w[2 * g : 2 * g + 2].view(2, 1, 1) + b[
                2 * g : 2 * g + 2
            ].view(2, 1, 1)
            torch.testing.assert_close(grp.data[n, 2 * g : 2 * g + 2][ms], ref[ms])


def test_all_valid_matches_torch_functionals() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    ones = torch.ones(1, 1, 1, 1, dtype=torch.bool)
    w, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(
        MF.masked_instance_norm(x, ones, weight=w, bias=b).data, F.instance_norm(x, weight=w, bias=b)
    )
    torch.testing.assert_close(MF.masked_group_norm(x, ones, 2, w, b).data, F.group_norm(x, 2, w, b))
    torch.testing.assert_close(MF.masked_layer_norm(x, ones, (5, 6)).data, F.layer_norm(x, (5, 6)))
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    rm2, rv2 = rm.clone(), rv.clone()
    MF.masked_instance_norm(x, ones, rm, rv, momentum=0.3)
    F.instance_norm(x, rm2, rv2, momentum=0.3, use_input_stats=True)
    torch.testing.assert_close(rm, rm2)
    torch.testing.assert_close(rv, rv2)


def test_gradcheck_float64() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    m = torch.rand(3, 1, 3, 3) > 0.3
    assert torch.autograd.gradcheck(
        lambda x, w, b: MF.masked_batch_norm(x, m, None, None, w, b, True).data, (x, w, b)
    )
    assert torch.autograd.gradcheck(lambda x, w, b: MF.masked_group_norm(x, m, 2, w, b).data, (x, w, b))
    assert torch.autograd.gradcheck(lambda x: MF.masked_instance_norm(x, m).data, (x,))
    assert torch.autograd.gradcheck(lambda x: MF.masked_layer_norm(x, m, (3, 3)).data, (x,))


def test_bad_inputs() -> None:
    bn = mnn.MaskedBatchNorm2d(3)
    with pytest.raises(
        ValueError, match=r"MaskedBatchNorm2d: expected data \(N, C, H, W\), got shape \(3, 4, 4\)"
    ):
        bn(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match=r"masked_batch_norm: mask shape \(2, 1, 3, 4\) does not fit"):
        MF.masked_batch_norm(torch.randn(2, 3, 4, 4), torch.ones(2, 1, 3, 4, dtype=torch.bool), training=True)
    with pytest.raises(ValueError, match="masked_group_norm: 3 channels"):
        MF.masked_group_norm(torch.randn(2, 3, 4), torch.ones(2, 1, 4), 2)
    with pytest.raises(ValueError, match="masked_layer_norm: normalized_shape"):
        MF.masked_layer_norm(torch.randn(2, 3, 4), torch.ones(2, 3, 1), (3,))


@pytest.mark.parametrize("name", ["batch", "instance", "group", "layer"])
def test_float32_statistics_stay_accurate_for_a_large_mean(name: str) -> None:
    # Regression: the variance was computed as Σx²/n - mean² (one pass), which cancels in
    # float32 when |mean| >> std: an output error of ~0.15 for data around 1000.
    g = torch.Generator().manual_seed(3)
    x64 = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64) + 1000.0
    m = torch.rand(4, 1, 8, 8, generator=g) > 0.5
    ops = {
        "batch": lambda x: MF.masked_batch_norm(x, m, training=True),
        "instance": lambda x: MF.masked_instance_norm(x, m),
        "group": lambda x: MF.masked_group_norm(x, m, 1),
        "layer": lambda x: MF.masked_layer_norm(x, m, [8, 8]),
    }
    out32 = ops[name](x64.float()).data.double()
    out64 = ops[name](x64).data
    torch.testing.assert_close(out32, out64, rtol=0, atol=1e-3)


# ------------------------------------------------------------ batch-norm moments (for SyncBN)
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    length=st.integers(1, 6),
    per_channel=st.booleans(),
    offset=st.sampled_from([0.0, 1000.0]),
    seed=st.integers(0, 2**16),
)
def test_batch_norm_moments_match_a_loop_and_combine_with_chans_formula(
    n: int, c: int, length: int, per_channel: bool, offset: float, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n, c if per_channel else 1, length, generator=g) > 0.5
    x64 = torch.randn(n, c, length, generator=g, dtype=torch.float64) + offset
    x = torch.where(m, x64, torch.nan).float()
    count, mean, m2 = batch_norm_moments(x, m)
    assert count.shape == mean.shape == m2.shape == (c,)
    mf = m.expand(x.shape)
    for ch in range(c):
        vals = x64[:, ch][mf[:, ch]]
        assert count[ch] == vals.numel()
        if vals.numel():
            torch.testing.assert_close(mean[ch].double(), vals.mean(), rtol=1e-6, atol=1e-6)
            want = ((vals - vals.mean()) ** 2).sum()
            torch.testing.assert_close(m2[ch].double(), want, rtol=1e-4, atol=1e-4)
        else:
            assert mean[ch] == 0 and m2[ch] == 0
    # Split the batch (as across ranks) and combine exactly: n, mean and M2 of the whole.
    parts = [batch_norm_moments(x[i : i + 1], m[i : i + 1]) for i in range(n)]
    tot = sum(p[0] for p in parts)
    comb_mean = sum(p[0] * p[1] for p in parts) / tot.clamp_min(1)
    comb_m2 = sum(p[2] + p[0] * (p[1] - comb_mean) ** 2 for p in parts)
    torch.testing.assert_close(tot, count)
    torch.testing.assert_close(comb_mean, mean, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(comb_m2, m2, rtol=1e-4, atol=1e-3)


def test_batch_norm_moments_are_differentiable_and_selected() -> None:
    x = torch.tensor([[[1.0, 3.0, float("nan")]]], dtype=torch.float64, requires_grad=True)
    m = torch.tensor([[[True, True, False]]])
    _, mean, m2 = batch_norm_moments(x, m)
    (gm,) = torch.autograd.grad(mean.sum() + m2.sum(), x)
    # d mean / dx = 1/2 each; d M2 / dx = 2 (x - mean) = (-2, 2); the masked NaN gets 0.
    assert gm.tolist() == [[[0.5 - 2.0, 0.5 + 2.0, 0.0]]]


# ------------------------------------------------------------------------- the two paths
@pytest.mark.parametrize("training", [True, False])
def test_eager_batch_norm_runs_one_fused_node_and_the_composable_path_plain_ops(training: bool) -> None:
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    m = torch.rand(2, 1, 4, 4) > 0.3
    rm, rv = torch.zeros(3), torch.ones(3)
    out = MF.masked_batch_norm(x, m, rm, rv, training=training)
    assert type(out.data.grad_fn).__name__ in ("_BatchNormTrainBackward", "_BatchNormEvalBackward")
    with composable_only():
        comp = MF.masked_batch_norm(x, m, rm.clone(), rv.clone(), training=training)
    assert "_BatchNorm" not in type(comp.data.grad_fn).__name__
    torch.testing.assert_close(out.data, comp.data)


def test_batch_norm_training_computes_the_centred_form_on_both_paths() -> None:
    # Channel 0 has one valid value (its deviation is exactly 0: the output is exactly the
    # bias), channel 1 nearly equal values (std 1e-3, rstd ~ 300). The fast path computes
    # (x - mean)·rstd·w + b, as the composable (and compiled) path does, not torch's folded
    # x·(rstd·w) + (b - mean·rstd·w), which gave 2e-5 instead of the bias for channel 0.
    x = torch.tensor([[[-2.1787894], [2.5 + 1e-3], [7.0]], [[float("nan")], [2.5 - 1e-3], [-3.0]]])
    m = ~x.isnan()
    w = torch.tensor([1.5, 0.7, 1.0], requires_grad=True)
    b = torch.tensor([0.25, -0.5, 0.0])
    out = MF.masked_batch_norm(x, m, weight=w, bias=b, training=True).data
    assert type(out.grad_fn).__name__ == "_BatchNormTrainBackward"
    with composable_only():
        comp = MF.masked_batch_norm(x, m, weight=w, bias=b, training=True).data
    assert out[0, 0, 0].item() == comp[0, 0, 0].item() == 0.25  # exactly the bias
    assert out[1, 0, 0].item() == comp[1, 0, 0].item() == 0.0  # masked
    ref = MF.masked_batch_norm(x.double(), m, weight=w.double(), bias=b.double(), training=True).data
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(comp.double(), ref, rtol=0, atol=1e-5)


def test_batch_norm_empty_batch_and_half_precision_take_the_composable_path() -> None:
    out = MF.masked_batch_norm(torch.zeros(0, 3, 4), torch.ones(0, 1, 4, dtype=torch.bool), training=True)
    assert out.data.shape == (0, 3, 4)
    x = torch.randn(2, 3, 4, dtype=torch.bfloat16, requires_grad=True)
    y = MF.masked_batch_norm(x, torch.rand(2, 1, 4) > 0.3, training=True).data
    assert y.dtype == torch.bfloat16 and "_BatchNorm" not in type(y.grad_fn).__name__


def test_batch_norm_backward_keeps_precision_for_a_large_mean() -> None:
    # The fused backward forms Σ dy·(x - mean) from the centred data, not Σ dy·x - mean·Σ dy
    # (which cancels in float32 when |mean| >> std).
    g = torch.Generator().manual_seed(0)
    x64 = torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64) + 1000.0
    m = torch.rand(4, 1, 16, 16, generator=g) > 0.5
    w = torch.rand(3, generator=g, dtype=torch.float64) + 0.5
    cot = torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64)
    grads = []
    for dt in (torch.float32, torch.float64):
        x = x64.to(dt).requires_grad_(True)
        wt = w.to(dt).requires_grad_(True)
        out = MF.masked_batch_norm(x, m, weight=wt, training=True).data
        grads.append(torch.autograd.grad(out, (x, wt), cot.to(dt)))
    torch.testing.assert_close(grads[0][0].double(), grads[1][0], rtol=0, atol=2e-3)
    torch.testing.assert_close(grads[0][1].double(), grads[1][1], rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("frozen", [True, False])
def test_eval_composable_form_with_one_select_is_nan_safe(frozen: bool) -> None:
    # Without a weight gradient the inference form selects only its output: NaN/Inf at masked
    # inputs must still reach no output and no gradient.
    g = torch.Generator().manual_seed(0)
    m = torch.rand(2, 1, 4, 5, generator=g) > 0.4
    x = torch.where(m, torch.randn(2, 3, 4, 5, generator=g), torch.tensor(float("inf")))
    x[0, 0, ~m[0, 0]] = float("nan")
    x.requires_grad_(True)
    w = torch.rand(3, generator=g).requires_grad_(not frozen)
    rm, rv = torch.zeros(3), torch.ones(3)
    with composable_only():
        out = MF.masked_batch_norm(x, m, rm, rv, w, None, training=False).data
        cot = torch.where(m, torch.ones_like(out), torch.nan)
        grads = torch.autograd.grad(out, [x] if frozen else [x, w], cot)
    with torch.no_grad():
        ref = MF.masked_batch_norm(x, m, rm, rv, w, None, training=False).data
    torch.testing.assert_close(out, ref)
    assert bool((out[~m.expand(out.shape)] == 0).all())
    assert all(bool(torch.isfinite(gr).all()) for gr in grads)
    assert bool((grads[0][~m.expand(x.shape)] == 0).all())
