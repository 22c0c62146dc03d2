"""Masked embedding: ``nn.Embedding`` whose token ids produce the mask."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from masknn._masked import Masked
from masknn._validation import OutOfRangeError, check_int, check_number
from masknn.functional.embedding import check_embedding_args, id_mask, lookup
from masknn.nn._checks import construct

__all__ = ["MaskedEmbedding"]


class MaskedEmbedding(nn.Embedding):
    """``nn.Embedding`` that returns a [`masknn.Masked`][]: the ids produce the mask.

    Arguments and parameters as ``torch.nn.Embedding`` (its ``state_dict`` loads
    unchanged, both ways), plus ``mask_zero`` (keyword): like Keras'
    ``Embedding(mask_zero=True)``, id 0 is padding and masked. A position is masked when
    its id is ``padding_idx`` (if set), or 0 with ``mask_zero``, or when the input is a
    ``Masked`` whose mask says so.

    Input: integer ids ``(*)``, typically ``(N, T)``, as a plain tensor or as
    ``Masked(ids, mask)`` with a mask of the ids' shape (True = valid). Output:
    ``Masked`` with data ``(*, embedding_dim)`` and mask ``(*, 1)`` (``(N, T, 1)`` for
    sequences), ready for the masked sequence layers.

    The contract, for ids: masked positions output exactly 0 and give no gradient to
    any row of the weight, whatever id they hold (an id out of range at a masked
    position is no error); they never change a valid output. Unlike Keras, whose
    masked positions still output the embedding of id 0, and ``nn.Embedding``, whose
    output at ``padding_idx`` is that row (zeros only while it stays untrained).
    Masked positions are looked up at the padding row (row 0 without one) and
    discarded; with ``max_norm`` that row is renormalized as ``nn.Embedding`` does for
    every row it looks up. ``scale_grad_by_freq=True`` with a ``Masked`` input needs
    ``padding_idx`` or ``mask_zero`` (a ``ValueError`` otherwise).

    Examples:
        >>> import torch
        >>> emb = MaskedEmbedding(10, 4, mask_zero=True)
        >>> out = emb(torch.tensor([[5, 2, 0, 0], [7, 0, 0, 0]]))
        >>> out.data.shape, out.mask[..., 0]
        (torch.Size([2, 4, 4]), tensor([[ True,  True, False, False],
                [ True, False, False, False]]))
        >>> bool((out.data[0, 2:] == 0).all())
        True
        >>> plain = torch.nn.Embedding(10, 4)
        >>> plain.load_state_dict(emb.state_dict())  # the same weights, both ways
        <All keys matched successfully>
    """

    mask_zero: bool

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Tensor | None = None,
        _freeze: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        mask_zero: bool = False,
    ) -> None:
        layer = "MaskedEmbedding"
        check_int(layer, "num_embeddings", num_embeddings, 0)
        check_int(layer, "embedding_dim", embedding_dim, 0)
        if padding_idx is not None:
            check_int(layer, "padding_idx", padding_idx)
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise OutOfRangeError(
                    f"{layer}: padding_idx must lie in [-{num_embeddings}, {num_embeddings}) "
                    f"(num_embeddings), got {padding_idx}"
                )
        if max_norm is not None:
            check_number(layer, "max_norm", max_norm, 0.0, low_open=True)
        construct(
            layer,
            super().__init__,
            num_embeddings,
            embedding_dim,
            padding_idx,
            max_norm,
            norm_type,
            scale_grad_by_freq,
            sparse,
            _weight,
            _freeze,
            device,
            dtype,
        )
        if not isinstance(mask_zero, bool):
            raise TypeError(f"MaskedEmbedding: mask_zero must be a bool, got {type(mask_zero).__name__}")
        self.mask_zero = mask_zero

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Tensor,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        *,
        mask_zero: bool = False,
    ) -> MaskedEmbedding:
        """As ``torch.nn.Embedding.from_pretrained``, plus ``mask_zero``.

        Examples:
            >>> import torch
            >>> emb = MaskedEmbedding.from_pretrained(torch.eye(3), padding_idx=0)
            >>> emb(torch.tensor([[2, 0]])).mask[..., 0]
            tensor([[ True, False]])
        """
        if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
            got = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings).__name__
            raise ValueError(f"MaskedEmbedding.from_pretrained: expected a 2-d embeddings tensor, got {got}")
        rows, cols = embeddings.shape
        return cls(
            rows,
            cols,
            padding_idx,
            max_norm,
            norm_type,
            scale_grad_by_freq,
            sparse,
            _weight=embeddings,
            _freeze=freeze,
            mask_zero=mask_zero,
        )

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + ", mask_zero=True" if self.mask_zero else s

    def forward(self, input: Masked | Tensor) -> Masked:  # type: ignore[override]
        name = "MaskedEmbedding"
        ids, mask = (input.data, input.mask) if isinstance(input, Masked) else (input, None)
        if isinstance(input, tuple) and not isinstance(input, Masked) and len(input) == 2:
            ids, mask = input  # a Masked rebuilt as a plain tuple: (ids, mask), validated below
        ids, padding_idx = check_embedding_args(name, ids, self.weight, self.padding_idx)
        valid = id_mask(name, ids, mask, padding_idx, self.mask_zero)
        return lookup(
            name,
            ids,
            valid,
            mask is not None,
            self.weight,
            padding_idx,
            self.mask_zero,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )
