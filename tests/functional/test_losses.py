"""Masked losses against plain PyTorch on the valid subset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn import Masked
from masknn.functional import (
    masked_binary_cross_entropy_with_logits,
    masked_cross_entropy,
    masked_l1_loss,
    masked_mse_loss,
    masked_smooth_l1_loss,
)

ELEMENTWISE = {
    "mse": (masked_mse_loss, F.mse_loss),
    "l1": (masked_l1_loss, F.l1_loss),
    "smooth_l1": (masked_smooth_l1_loss, F.smooth_l1_loss),
    "bce": (masked_binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), rate=st.sampled_from([0.0, 0.4, 0.9]), shared=st.booleans())
def test_elementwise_losses_match_valid_subset(
    name: str, reduction: str, seed: int, rate: float, shared: bool
) -> None:
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(3, 4, 5)))
    t = torch.tensor(rng.random(size=(3, 4, 5)))
    m = torch.tensor(rng.random(size=(3, 1, 5) if shared else (3, 4, 5)) >= rate)
    ours, theirs = ELEMENTWISE[name]
    xn = torch.where(m, x, torch.tensor(math.nan, dtype=x.dtype))
    tn = torch.where(m, t, torch.tensor(math.inf, dtype=t.dtype))
    got = ours(xn, tn, m, reduction=reduction)
    full = m.expand(x.shape)
    ref_elem = theirs(x[full], t[full], reduction="none")
    if reduction == "none":
        want = torch.zeros_like(x)
        want[full] = ref_elem
        torch.testing.assert_close(got, want)
    elif reduction == "sum":
        torch.testing.assert_close(got, ref_elem.sum())
    else:
        want_mean = ref_elem.mean() if ref_elem.numel() else torch.tensor(0.0, dtype=x.dtype)
        torch.testing.assert_close(got, want_mean)


def test_no_valid_element_gives_zero_loss_and_zero_grad() -> None:
    x = torch.randn(2, 3, requires_grad=True)
    m = torch.zeros(2, 3, dtype=torch.bool)
    for op, _ in ELEMENTWISE.values():
        loss = op(x, torch.full((2, 3), math.nan), m)
        assert loss.item() == 0.0
        loss.backward()
        assert x.grad is not None and x.grad.eq(0).all()


def test_masked_inputs_and_targets_combine() -> None:
    x = Masked(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([True, True, False]))
    t = Masked(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([False, True, True]))
    assert masked_mse_loss(x, t).item() == 4.0
    with pytest.raises(TypeError, match="masked_mse_loss: expected a mask"):
        masked_mse_loss(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="input shape"):
        masked_mse_loss(torch.zeros(2), torch.zeros(3), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction must be one of"):
        masked_l1_loss(torch.zeros(2), torch.zeros(2), torch.ones(2, dtype=torch.bool), reduction="avg")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31), rate=st.sampled_from([0.0, 0.5, 1.0]), smoothing=st.sampled_from([0.0, 0.1])
)
def test_cross_entropy_matches_valid_subset(reduction: str, seed: int, rate: float, smoothing: float) -> None:
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(size=(3, 5, 4)))
    target = torch.tensor(rng.integers(0, 5, size=(3, 4)))
    m = torch.tensor(rng.random(size=(3, 4)) >= rate)
    garbage_target = torch.where(m, target, torch.full_like(target, 99))
    nan_logits = torch.where(m.unsqueeze(1), logits, torch.tensor(math.nan, dtype=logits.dtype))
    got = masked_cross_entropy(nan_logits, garbage_target, m, reduction=reduction, label_smoothing=smoothing)
    flat_logits = logits.permute(0, 2, 1)[m]
    ref = F.cross_entropy(flat_logits, target[m], reduction="none", label_smoothing=smoothing)
    if reduction == "none":
        want = torch.zeros(3, 4, dtype=logits.dtype)
        want[m] = ref
        torch.testing.assert_close(got, want)
    elif reduction == "sum":
        torch.testing.assert_close(got, ref.sum())
    else:
        torch.testing.assert_close(got, ref.mean() if ref.numel() else torch.tensor(0.0, dtype=logits.dtype))


def test_cross_entropy_mask_shapes_and_ignore_index() -> None:
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    m = torch.rand(2, 1, 4, 4) > 0.5
    a = masked_cross_entropy(logits, target, m)
    b = masked_cross_entropy(logits, target, m[:, 0])
    torch.testing.assert_close(a, b)
    ignored = torch.where(m[:, 0], target, torch.full_like(target, -100))
    torch.testing.assert_close(masked_cross_entropy(logits, ignored), a)
    with pytest.raises(ValueError, match=r"masked_cross_entropy: expected logits \(N, C, \*\)"):
        masked_cross_entropy(logits, target[:, :2], m)
    with pytest.raises(TypeError, match="integer class indices"):
        masked_cross_entropy(logits, target.float(), m)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31), rate=st.sampled_from([0.0, 0.5, 1.0]), smoothing=st.sampled_from([0.0, 0.2])
)
def test_cross_entropy_per_timestep_logits_class_last(
    reduction: str, seed: int, rate: float, smoothing: float
) -> None:
    # Keras' layout: (N, T, C) logits from a per-timestep Linear, (N, T) targets and mask.
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(size=(3, 4, 5)))  # (N, T, C)
    target = torch.tensor(rng.integers(0, 5, size=(3, 4)))
    m = torch.tensor(rng.random(size=(3, 4)) >= rate)
    nan_logits = torch.where(m.unsqueeze(-1), logits, torch.tensor(math.nan, dtype=logits.dtype))
    got = masked_cross_entropy(
        nan_logits, torch.where(m, target, 99), m, reduction, label_smoothing=smoothing, class_dim=-1
    )
    want = masked_cross_entropy(
        logits.transpose(1, 2), target, m, reduction, label_smoothing=smoothing, class_dim=1
    )
    torch.testing.assert_close(got, want)
    ref = F.cross_entropy(logits[m], target[m], reduction="none", label_smoothing=smoothing)
    if reduction == "mean":
        torch.testing.assert_close(got, ref.mean() if ref.numel() else torch.tensor(0.0, dtype=got.dtype))
    # A Masked input in the class-last layout: its mask (N, T, 1) masks whole steps.
    masked_in = Masked(nan_logits, m.unsqueeze(-1))
    torch.testing.assert_close(
        masked_cross_entropy(masked_in, target, reduction=reduction, label_smoothing=smoothing, class_dim=-1),
        got,
    )


def test_cross_entropy_layout_errors_say_which_layout_to_pass() -> None:
    logits = torch.randn(2, 5, 3)  # (N, T, C) given with the default class_dim=1
    with pytest.raises(
        ValueError, match=r"for per-timestep logits \(N, T, C\) with target \(N, T\), pass class_dim=-1"
    ):
        masked_cross_entropy(logits, torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected logits \(N, \*, C\) and target \(N, \*\)"):
        masked_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), None, class_dim=-1)
    with pytest.raises(ValueError, match="class_dim must not be the batch dimension"):
        masked_cross_entropy(logits, torch.zeros(5, 3, dtype=torch.long), None, class_dim=0)
    with pytest.raises(ValueError, match="class_dim 3 is out of range"):
        masked_cross_entropy(logits, torch.zeros(2, 5, dtype=torch.long), None, class_dim=3)
    with pytest.raises(ValueError, match="label_smoothing must lie in"):
        masked_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), None, label_smoothing=1.5)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_losses_follow_the_plain_twin_under_autocast_and_half(name: str) -> None:
    ours, theirs = ELEMENTWISE[name]
    x = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    t = torch.rand(2, 3, 4, dtype=torch.bfloat16)
    m = torch.rand(2, 1, 4) > 0.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours(x, t, m).dtype == theirs(x, t).dtype == torch.float32
    assert ours(x, t, m).dtype == theirs(x, t).dtype == torch.bfloat16
    want = theirs(x.float()[m.expand_as(x)], t.float()[m.expand_as(x)])
    torch.testing.assert_close(ours(x, t, m).float(), want, atol=1e-2, rtol=1e-2)


def test_integer_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="masked_mse_loss: expected floating point input"):
        masked_mse_loss(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), torch.ones(2))
    with pytest.raises(ValueError, match=r"pos_weight \(3,\) does not broadcast"):
        masked_binary_cross_entropy_with_logits(
            torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 4), pos_weight=torch.ones(3)
        )


# ------------------------------------------------ the fused node's backward (eager CPU fast path)
def _grads(
    fn: object, x: torch.Tensor, t: torch.Tensor, m: torch.Tensor, scale: float, need_t: bool, twice: bool
) -> list[torch.Tensor]:
    xa = x.clone().requires_grad_(True)
    ta = t.clone().requires_grad_(need_t)
    out = fn(xa, ta, m) * scale  # type: ignore[operator]
    wrt = [xa, ta] if need_t else [xa]
    first = list(torch.autograd.grad(out, wrt, retain_graph=twice))
    if twice:  # a second backward of the same graph gives the same gradients
        second = torch.autograd.grad(out, wrt)
        for a, b in zip(first, second):
            assert torch.equal(a, b)
    return first


@pytest.mark.parametrize("kind", ["mse", "l1", "smooth_l1", "smooth_l1_beta0", "smooth_l1_tiny_beta"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(
    ("scale", "need_t", "twice"), [(1.0, False, False), (-2.5, True, True), (1.0, True, True)]
)
def test_fused_backward_equals_the_composable_path(
    kind: str, reduction: str, scale: float, need_t: bool, twice: bool
) -> None:
    """The forward hands its unit gradient to the first backward (scaled in place unless the
    cotangent is 1); a second backward (retain_graph) recomputes it; masked NaN/Inf reach nothing."""
    from masknn.functional._select import composable_only

    beta = {"smooth_l1_beta0": 0.0, "smooth_l1_tiny_beta": 1e-310}.get(kind, 0.5)
    op, _ = ELEMENTWISE[kind.split("_beta")[0].replace("_tiny", "")]
    x = torch.randn(4, 3, 6, 5, dtype=torch.float64)
    t = torch.randn(4, 3, 6, 5, dtype=torch.float64)
    m = torch.rand(4, 1, 6, 5) > 0.4
    m[1] = False
    m[0, 0, 0, 0] = True
    t[0, :, 0, 0] = x[0, :, 0, 0]  # d = 0 at valid elements
    x = torch.where(m, x, math.nan)
    t = torch.where(m, t, math.inf)

    def fn(a: torch.Tensor, b: torch.Tensor, mm: torch.Tensor) -> torch.Tensor:
        if kind.startswith("smooth_l1"):
            return masked_smooth_l1_loss(a, b, mm, reduction, beta=beta)
        return op(a, b, mm, reduction)

    got = _grads(fn, x, t, m, scale, need_t, twice)
    with composable_only():
        want = _grads(fn, x, t, m, scale, need_t, False)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-300)
        assert bool(torch.isfinite(g).all())
        assert bool((g.masked_select(~m.expand(g.shape)) == 0).all())


@pytest.mark.parametrize("kind", list(ELEMENTWISE))
@pytest.mark.parametrize("per_element_mask", [False, True])
def test_fused_losses_over_several_chunks_equal_the_composable_path(
    kind: str, per_element_mask: bool
) -> None:
    """Inputs larger than one chunk of the fused node (2 chunks; mask bits per chunk for the
    per-element mask, shared for the (N, 1, H, W) one): loss and gradients as the composite."""
    from masknn.functional import losses as L
    from masknn.functional._select import composable_only

    op, _ = ELEMENTWISE[kind]
    g = torch.Generator().manual_seed(3)
    shape = (3, 2, 300, 300)
    assert len(L._chunks(shape[0], math.prod(shape))) == 2
    x = torch.randn(shape, generator=g)
    t = (torch.rand(shape, generator=g) > 0.5).float() if kind == "bce" else torch.randn(shape, generator=g)
    m = torch.rand((3, 2 if per_element_mask else 1, 300, 300), generator=g) > 0.3
    assert (m.numel() > L._CHUNK) == per_element_mask
    x = torch.where(m, x, math.nan)
    for reduction in ("sum", "mean"):
        results = []
        for composable in (False, True):
            xa = x.clone().requires_grad_(True)
            with composable_only() if composable else torch.enable_grad():
                out = op(xa, t, m, reduction)
                (gx,) = torch.autograd.grad(out, xa)
            results.append((out.detach(), gx))
        (a, ga), (b, gb) = results
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-9)
        assert bool(torch.isfinite(ga).all())


@pytest.mark.parametrize("kind", ["mse", "l1", "smooth_l1", "smooth_l1_beta0", "smooth_l1_tiny_beta", "bce"])
@pytest.mark.parametrize("shape", [(4, 3, 6, 5), (3, 2, 300, 300)], ids=["one-chunk", "two-chunks"])
def test_fused_inference_forward_equals_the_composable_path(kind: str, shape: tuple[int, ...]) -> None:
    """Without gradients the fused node takes its inference branch (for smooth L1 the loss straight
    from x and t, then selected): the loss equals the composite's, and masked NaN/Inf reach nothing."""
    from masknn.functional._select import composable_only

    beta = {"smooth_l1_beta0": 0.0, "smooth_l1_tiny_beta": 1e-310}.get(kind, 0.5)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    t = (torch.rand(shape, generator=g) > 0.5).double() if kind == "bce" else torch.randn(shape, generator=g)
    t = t.double()
    m = torch.rand((shape[0], 1, *shape[2:]), generator=g) > 0.4
    m[1] = False
    x = torch.where(m, x, math.nan)
    t = torch.where(m, t, math.inf)

    def fn(reduction: str) -> torch.Tensor:
        if kind.startswith("smooth_l1"):
            return masked_smooth_l1_loss(x, t, m, reduction, beta=beta)
        if kind == "bce":
            return masked_binary_cross_entropy_with_logits(x, torch.where(m, t, 0.5), m, reduction)
        return ELEMENTWISE[kind][0](x, t, m, reduction)

    for reduction in ("sum", "mean"):
        with torch.no_grad():
            got = fn(reduction)
            with composable_only():
                want = fn(reduction)
        assert bool(torch.isfinite(got))
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-300)
