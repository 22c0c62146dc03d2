"""masked_embedding against F.embedding, the mask rules, and the contract for integer ids."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn.functional import masked_embedding

#: The integer analogue of masknn.testing.DEFAULT_PERTURBATIONS (which writes floats and
#: leaves integer data as it is): ids written at masked positions. None = random ids in range.
ID_PERTURBATIONS: tuple[int | None, ...] = (None, 0, 1, -1, 10, 2**31 - 1, -(2**63), 2**63 - 1)


def _perturb_ids(ids: torch.Tensor, valid: torch.Tensor, value: int | None, n: int) -> torch.Tensor:
    fill = torch.randint(0, n, ids.shape) if value is None else torch.full_like(ids, value)
    return torch.where(valid, ids, fill)


def test_matches_f_embedding_at_valid_positions_and_zero_elsewhere() -> None:
    torch.manual_seed(0)
    w = torch.randn(7, 3)
    ids = torch.randint(0, 7, (4, 6))
    ids[0, -2:] = 0
    out = masked_embedding(ids, None, w, padding_idx=None, mask_zero=True)
    valid = ids != 0
    assert out.mask.shape == (4, 6, 1)
    assert torch.equal(out.mask[..., 0], valid)
    assert torch.equal(out.data[valid], F.embedding(ids, w)[valid])
    assert bool((out.data[~valid] == 0).all())


@pytest.mark.parametrize(
    ("padding_idx", "mask_zero", "external"),
    [(None, False, True), (2, False, False), (-1, False, True), (None, True, False), (3, True, True)],
)
def test_mask_sources_combine(padding_idx: int | None, mask_zero: bool, external: bool) -> None:
    torch.manual_seed(1)
    n = 5
    w = torch.randn(n, 4)
    ids = torch.randint(0, n, (3, 8))
    ext = torch.rand(3, 8) > 0.3
    out = masked_embedding(ids, ext if external else None, w, padding_idx=padding_idx, mask_zero=mask_zero)
    expect = ext.clone() if external else torch.ones(3, 8, dtype=torch.bool)
    if padding_idx is not None:
        expect &= ids != padding_idx % n
    if mask_zero:
        expect &= ids != 0
    assert torch.equal(out.mask[..., 0], expect)
    assert torch.equal(out.data[expect], w[ids[expect]])
    assert bool((out.data[~expect] == 0).all())


def test_row_mask_and_any_leading_shape() -> None:
    w = torch.randn(6, 2)
    ids = torch.randint(0, 6, (2, 3, 4))
    m = torch.rand(2, 3, 4, 1) > 0.5  # a row mask (*, 1) is taken as the ids' mask
    out = masked_embedding(ids, m, w)
    assert out.data.shape == (2, 3, 4, 2) and torch.equal(out.mask, m)
    out = masked_embedding(ids, torch.tensor([[[True]], [[False]]]), w)  # broadcast over (3, 4)
    assert bool(out.mask[0].all()) and not bool(out.mask[1].any())


@pytest.mark.parametrize("value", ID_PERTURBATIONS)
def test_ids_at_masked_positions_change_nothing(value: int | None) -> None:
    """The contract for ids: any id at a masked position, out of range included, changes no
    valid output and no gradient of the weight, and raises no error."""
    torch.manual_seed(2)
    n = 9
    ids = torch.randint(1, n, (4, 6))
    valid = torch.rand(4, 6) > 0.4
    valid[1] = False  # a fully masked sample
    g = torch.randn(4, 6, 3)

    def run(i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.randn(n, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        out = masked_embedding(i, valid, w, mask_zero=True, max_norm=1.5)
        (out.data * g).sum().backward()
        assert w.grad is not None
        return out.data, w.grad

    ref_out, ref_grad = run(ids)
    out, grad = run(_perturb_ids(ids, valid, value, n))
    assert torch.equal(out, ref_out) and torch.equal(grad, ref_grad)
    assert bool((out[~valid] == 0).all())


def test_no_gradient_into_rows_from_masked_positions() -> None:
    w = torch.randn(5, 2, requires_grad=True)
    ids = torch.tensor([[1, 2, 3, 4]])
    valid = torch.tensor([[True, False, True, False]])
    out = masked_embedding(ids, valid, w)
    # NaN/Inf cotangents at masked outputs must not reach any row (select, not multiply).
    cot = torch.tensor([[[1.0, 1.0], [float("nan")] * 2, [2.0, 2.0], [float("inf")] * 2]])
    out.data.backward(cot)
    assert w.grad is not None
    expect = torch.zeros(5, 2)
    expect[1] = 1.0
    expect[3] = 2.0
    assert torch.equal(w.grad, expect)


def test_padding_row_gets_no_gradient_and_output_is_zero_even_when_trained() -> None:
    w = torch.randn(4, 2)  # row 0 is not zero (a loaded checkpoint may hold anything there)
    w.requires_grad_(True)
    ids = torch.tensor([[0, 1, 0, 2]])
    out = masked_embedding(ids, None, w, padding_idx=0)
    assert bool((out.data[0, [0, 2]] == 0).all())
    out.data.sum().backward()
    assert w.grad is not None and bool((w.grad[0] == 0).all())


def test_scale_grad_by_freq() -> None:
    w = torch.randn(5, 2, requires_grad=True)
    ids = torch.tensor([[1, 1, 2, 0, 0, 0]])
    out = masked_embedding(ids, None, w, mask_zero=True, scale_grad_by_freq=True)
    out.data.sum().backward()
    ref_w = w.detach().clone().requires_grad_(True)
    F.embedding(torch.tensor([[1, 1, 2]]), ref_w, scale_grad_by_freq=True).sum().backward()
    assert w.grad is not None and ref_w.grad is not None
    assert torch.equal(w.grad, ref_w.grad)
    with pytest.raises(ValueError, match=r"^masked_embedding: scale_grad_by_freq=True with a mask"):
        masked_embedding(ids, ids > 0, w, scale_grad_by_freq=True)
    masked_embedding(ids, ids > 0, w, padding_idx=4, scale_grad_by_freq=True)  # fine with a padding row


def test_sparse_gradient() -> None:
    w = torch.randn(6, 2, requires_grad=True)
    ids = torch.tensor([[1, 5, 0]])
    masked_embedding(ids, None, w, mask_zero=True, sparse=True).data.sum().backward()
    assert w.grad is not None and w.grad.is_sparse
    dense = w.grad.to_dense()
    assert torch.equal(dense[[1, 5]], torch.ones(2, 2)) and bool((dense[[0, 2, 3, 4]] == 0).all())


def test_errors_name_the_op() -> None:
    w = torch.randn(4, 2)
    with pytest.raises(TypeError, match=r"^masked_embedding: expected integer token ids .* torch.float32"):
        masked_embedding(torch.zeros(2, 3), None, w)
    with pytest.raises(TypeError, match=r"^masked_embedding: expected data as a torch.Tensor, got list"):
        masked_embedding([1, 2], None, w)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"^masked_embedding: expected weight \(num_embeddings, embedding_dim\)"
    ):
        masked_embedding(torch.zeros(2, 3, dtype=torch.long), None, torch.randn(4))
    with pytest.raises(ValueError, match=r"^masked_embedding: padding_idx must lie in \[-4, 4\)"):
        masked_embedding(torch.zeros(2, 3, dtype=torch.long), None, w, padding_idx=4)
    with pytest.raises(
        ValueError, match=r"^masked_embedding: mask shape \(3, 2\) does not fit data shape \(2, 3\)"
    ):
        masked_embedding(torch.zeros(2, 3, dtype=torch.long), torch.ones(3, 2, dtype=torch.bool), w)
    with pytest.raises(IndexError):  # a valid id out of range is an error, as in F.embedding
        masked_embedding(torch.tensor([[1, 7]]), None, w)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    t=st.integers(1, 6),
    vocab=st.integers(2, 8),
    seed=st.integers(0, 2**16),
    mask_zero=st.booleans(),
    use_padding=st.booleans(),
)
def test_property_valid_rows_are_the_lookup(
    n: int, t: int, vocab: int, seed: int, mask_zero: bool, use_padding: bool
) -> None:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(vocab, 3, generator=gen)
    ids = torch.randint(0, vocab, (n, t), generator=gen)
    ext = torch.rand(n, t, generator=gen) > 0.3
    pad = vocab - 1 if use_padding else None
    out = masked_embedding(ids, ext, w, padding_idx=pad, mask_zero=mask_zero)
    valid = ext & (ids != pad if pad is not None else True) & (ids != 0 if mask_zero else True)
    assert torch.equal(out.mask[..., 0], valid)
    assert torch.equal(out.data[valid], w[ids[valid]])
    assert bool((out.data[~valid] == 0).all())
    junk = torch.where(ext, ids, torch.full_like(ids, -12345))
    assert torch.equal(masked_embedding(junk, ext, w, padding_idx=pad, mask_zero=mask_zero).data, out.data)
