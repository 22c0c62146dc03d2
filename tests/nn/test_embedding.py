"""MaskedEmbedding: nn.Embedding's weights and arguments, the mask from the ids."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masknn import Masked
from masknn.nn import MaskedEmbedding, MaskedLinear, MaskedLSTM, MaskedTemporalPool
from masknn.testing import assert_no_leakage
from tests.functional.test_embedding import ID_PERTURBATIONS


def test_state_dict_loads_both_ways_and_twin_matches() -> None:
    torch.manual_seed(0)
    plain = nn.Embedding(10, 4, padding_idx=0)
    emb = MaskedEmbedding(10, 4, padding_idx=0)
    emb.load_state_dict(plain.state_dict())
    plain.load_state_dict(emb.state_dict())
    assert list(emb.state_dict()) == list(plain.state_dict()) == ["weight"]
    ids = torch.tensor([[4, 2, 9, 0, 0], [1, 0, 0, 0, 0]])
    out = emb(ids)
    ref = plain(ids)
    valid = ids != 0
    assert torch.equal(out.mask[..., 0], valid)
    assert torch.equal(out.data, ref)  # nn's padding row is zero while untrained
    out.data.sum().backward()
    ref.sum().backward()
    assert emb.weight.grad is not None and plain.weight.grad is not None
    assert torch.equal(emb.weight.grad, plain.weight.grad)


def test_defaults_and_repr_follow_nn_embedding() -> None:
    emb = MaskedEmbedding(5, 3)
    assert isinstance(emb, nn.Embedding)
    assert emb.padding_idx is None and not emb.mask_zero
    assert repr(emb) == "MaskedEmbedding(5, 3)"
    assert repr(MaskedEmbedding(5, 3, padding_idx=1, mask_zero=True)) == (
        "MaskedEmbedding(5, 3, padding_idx=1, mask_zero=True)"
    )
    out = emb(torch.tensor([[0, 1]]))  # no mask source: all valid
    assert bool(out.mask.all()) and out.mask.shape == (1, 2, 1)
    with pytest.raises(TypeError, match=r"^MaskedEmbedding: mask_zero must be a bool, got int"):
        MaskedEmbedding(5, 3, mask_zero=1)  # type: ignore[arg-type]


def test_mask_zero_keras_semantics_but_zero_output() -> None:
    emb = MaskedEmbedding(6, 2, mask_zero=True)
    with torch.no_grad():
        emb.weight[0] = 7.0  # Keras would output this row at masked steps; masknn outputs 0
    out = emb(torch.tensor([[3, 0, 5, 0]]))
    assert out.mask[..., 0].tolist() == [[True, False, True, False]]
    assert bool((out.data[0, [1, 3]] == 0).all())
    out.data.sum().backward()
    assert emb.weight.grad is not None and bool((emb.weight.grad[0] == 0).all())


def test_from_pretrained() -> None:
    w = torch.randn(4, 3)
    emb = MaskedEmbedding.from_pretrained(w, mask_zero=True)
    assert not emb.weight.requires_grad and torch.equal(emb.weight, w)
    out = emb(torch.tensor([[0, 2]]))
    assert out.mask[..., 0].tolist() == [[False, True]] and torch.equal(out.data[0, 1], w[2])
    assert MaskedEmbedding.from_pretrained(w, freeze=False, padding_idx=3).weight.requires_grad
    with pytest.raises(
        ValueError, match=r"^MaskedEmbedding.from_pretrained: expected a 2-d embeddings tensor"
    ):
        MaskedEmbedding.from_pretrained(torch.randn(3))


def test_masked_input_and_errors() -> None:
    emb = MaskedEmbedding(8, 2, padding_idx=7)
    ids = torch.tensor([[1, 2, 7, 3]])
    out = emb(Masked(ids, torch.tensor([[True, False, True, True]])))
    assert out.mask[..., 0].tolist() == [[True, False, False, True]]
    with pytest.raises(TypeError, match=r"^MaskedEmbedding: expected integer token ids"):
        emb(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"^MaskedEmbedding: scale_grad_by_freq=True with a mask on the ids"):
        MaskedEmbedding(8, 2, scale_grad_by_freq=True)(Masked(ids, ids > 1))


@pytest.mark.parametrize("value", ID_PERTURBATIONS)
def test_module_contract_for_ids(value: int | None) -> None:
    """What the contract checker cannot do for integer data: write other ids (out of range
    included) at masked positions; valid outputs, the mask and weight gradients stay bitwise."""
    torch.manual_seed(3)
    ids = torch.randint(1, 12, (3, 7))
    ids[0, 5:] = 0  # padding ids
    ext = torch.rand(3, 7) > 0.3
    ext[2] = False

    def run(i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        emb = MaskedEmbedding(12, 4, padding_idx=0)
        out = emb(Masked(i, ext))
        (out.data * torch.arange(4.0)).sum().backward()
        assert emb.weight.grad is not None
        return out.data, out.mask, emb.weight.grad

    ref = run(ids)
    gen = torch.randint(0, 12, ids.shape) if value is None else torch.full_like(ids, value)
    got = run(torch.where(ext, ids, gen))
    for a, b in zip(got, ref):
        assert torch.equal(a, b)


def test_sequential_keras_model() -> None:
    """Embedding(mask_zero=True) -> LSTM -> last valid step -> Dense, with masks from the ids."""
    torch.manual_seed(0)
    emb = MaskedEmbedding(20, 6, mask_zero=True)
    lstm = MaskedLSTM(6, 5, batch_first=True)
    ids = torch.tensor([[3, 7, 1, 0, 0], [0, 0, 4, 4, 9]])  # right and left padding
    x = emb(ids)
    out, _ = lstm(x)
    pooled = MaskedTemporalPool("last")(out)
    logits = MaskedLinear(5, 2)(pooled)
    assert logits.data.shape == (2, 2) and bool(logits.mask.all())
    ref_out, _ = nn.LSTM.forward(lstm, emb.weight[ids[1:, 2:]])
    torch.testing.assert_close(pooled.data[1], ref_out[0, -1])


def test_contract_checker_rows_pass() -> None:
    ids = torch.randint(0, 9, (3, 6))
    assert_no_leakage(MaskedEmbedding(9, 4, padding_idx=2), Masked(ids, torch.ones(3, 6, dtype=torch.bool)))


def test_compiles_without_graph_breaks_and_new_ids_do_not_recompile() -> None:
    """fullgraph with dynamic shapes (a counting backend, no code generation): new ids, new
    padding and a new length reuse the one graph."""
    torch.manual_seed(0)
    emb = MaskedEmbedding(10, 3, padding_idx=0, mask_zero=True)
    graphs = []

    def backend(gm: torch.fx.GraphModule, example: object) -> object:
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(emb, backend=backend, dynamic=True, fullgraph=True)
    for t in (5, 6, 6, 7):
        x = Masked(torch.randint(0, 10, (2, t)), torch.rand(2, t) > 0.2)
        out, ref = compiled(x), emb(x)
        assert torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)
    assert len(graphs) == 1
