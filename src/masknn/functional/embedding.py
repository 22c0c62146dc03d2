"""Masked embedding lookup: the token ids produce the mask (Keras ``Embedding(mask_zero=True)``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import OutOfRangeError, check_data, eager_checks, shape_str, to_bool_mask
from masknn.functional._select import select

__all__ = ["masked_embedding"]

_INT_DTYPES = (torch.int64, torch.int32)


def id_mask(
    op: str,
    ids: Tensor,
    mask: object | None,
    padding_idx: int | None,
    mask_zero: bool,
) -> Tensor:
    """The bool validity mask of integer ``ids`` (the ids' shape): ``mask`` (if any), and not
    ``padding_idx`` (if set), and not 0 (with ``mask_zero``)."""
    if mask is None:
        valid = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
    else:
        if isinstance(mask, Tensor) and mask.dim() == ids.dim() + 1 and mask.shape[-1] == 1:
            mask = mask[..., 0]  # a row mask (N, T, 1) for ids (N, T)
        valid = to_bool_mask(op, ids, mask, allow_sequence=False).expand(ids.shape)
    if padding_idx is not None:
        valid = valid & (ids != padding_idx)
    if mask_zero:
        valid = valid & (ids != 0)
    return valid


def check_embedding_args(
    op: str,
    ids: object,
    weight: Tensor,
    padding_idx: int | None,
) -> tuple[Tensor, int | None]:
    """Validate the ids and the weight; return the ids and ``padding_idx`` made non-negative."""
    ids = check_data(op, ids)
    if ids.dtype not in _INT_DTYPES:
        raise TypeError(
            f"{op}: expected integer token ids (torch.int64 or torch.int32), got a tensor of dtype "
            f"{ids.dtype}{'; embeddings take indices, not features' if ids.is_floating_point() else ''}"
        )
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        got = shape_str(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{op}: expected weight (num_embeddings, embedding_dim), got {got}")
    if weight.device != ids.device:
        raise ValueError(f"{op}: ids are on {ids.device} but weight is on {weight.device}")
    n = weight.shape[0]
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"{op}: padding_idx must lie in [-{n}, {n}) (num_embeddings), got {padding_idx}")
        if padding_idx < 0:
            padding_idx += n
    return ids, padding_idx


def lookup(
    op: str,
    ids: Tensor,
    valid: Tensor,
    has_mask: bool,
    weight: Tensor,
    padding_idx: int | None,
    mask_zero: bool,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
    sparse: bool,
) -> Masked:
    """Core of [`masked_embedding`][masknn.functional.masked_embedding] on validated ids and their bool mask
    (ids' shape);
    ``has_mask``: a mask was given with the ids (not only ``padding_idx``/``mask_zero``)."""
    # Masked positions are looked up at a fixed row, whatever id they hold (an id out of
    # range there is no error): the padding row if there is one, else row 0. Their output
    # is then replaced by 0 with a select, whose backward drops their cotangent, so that
    # row receives exactly 0 from them.
    safe = padding_idx if padding_idx is not None else 0
    if scale_grad_by_freq and has_mask and padding_idx is None and not mask_zero:
        raise ValueError(
            f"{op}: scale_grad_by_freq=True with a mask on the ids needs padding_idx or mask_zero=True: "
            "masked positions are looked up at the padding row (row 0 without one), and with a valid id 0 "
            "their count would scale its gradient"
        )
    if has_mask:  # otherwise the masked ids are padding_idx or 0: in range already
        ids = torch.where(valid, ids, torch.full((), safe, dtype=ids.dtype, device=ids.device))
    if eager_checks(ids) and ids.numel() > 0:  # F.embedding raises IndexError without the layer
        n = weight.shape[0]
        lo, hi = torch.aminmax(ids)
        if int(lo) < 0 or int(hi) >= n:
            bad = int(lo) if int(lo) < 0 else int(hi)
            raise OutOfRangeError(
                f"{op}: token id {bad} at a valid position is out of range for {n} embeddings "
                f"(num_embeddings); expected ids in [0, {n}) (torch raises IndexError: index out of range)"
            )
    emb = F.embedding(ids, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    m = valid.unsqueeze(-1)
    return Masked._unchecked(select(emb, m), m)


def masked_embedding(
    input: Tensor,
    mask: Tensor | None,
    weight: Tensor,
    padding_idx: int | None = None,
    mask_zero: bool = False,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Masked:
    """``torch.nn.functional.embedding`` whose ids produce the mask.

    A position is valid when ``mask`` (if given) says so, its id is not ``padding_idx``
    (if set) and, with ``mask_zero``, its id is not 0 (Keras' ``Embedding(mask_zero=True)``).

    Args:
        input: integer token ids of any shape ``(*)`` (``(N, T)`` for sequences).
        mask: ``None`` or a validity mask (True = valid) of the ids' shape (``(*, 1)`` and
            size-1 dimensions are accepted): masks positions whatever id they hold.
        weight: ``(num_embeddings, embedding_dim)``.
        padding_idx: as in ``F.embedding`` (its row gets no gradient), and masked.
        mask_zero: mask the positions whose id is 0.
        max_norm: as in ``F.embedding``.
        norm_type: as in ``F.embedding``.
        scale_grad_by_freq: as in ``F.embedding``.
        sparse: as in ``F.embedding``.

    Returns:
        ``Masked`` with data ``(*, embedding_dim)`` and mask ``(*, 1)``. Masked positions
        hold exactly 0 and give no gradient to any row of ``weight``. Their ids are never
        used: they are looked up at the padding row (row 0 without one), so an id out of
        range there raises no error. With ``max_norm``, that row is renormalized as
        ``F.embedding`` renormalizes every row it looks up. ``scale_grad_by_freq=True``
        with a ``mask`` needs ``padding_idx`` or ``mask_zero`` (a ``ValueError``
        otherwise), so that masked positions never count in a valid id's frequency.

    Examples:
        >>> import torch
        >>> ids = torch.tensor([[3, 1, 0, 0]])
        >>> out = masked_embedding(ids, None, torch.arange(8.0).view(4, 2), mask_zero=True)
        >>> out.data
        tensor([[[6., 7.],
                 [2., 3.],
                 [0., 0.],
                 [0., 0.]]])
        >>> out.mask[..., 0]
        tensor([[ True,  True, False, False]])
    """
    op = "masked_embedding"
    ids, padding_idx = check_embedding_args(op, input, weight, padding_idx)
    valid = id_mask(op, ids, mask, padding_idx, mask_zero)
    return lookup(
        op,
        ids,
        valid,
        mask is not None,
        weight,
        padding_idx,
        mask_zero,
        max_norm,
        norm_type,
        scale_grad_by_freq,
        sparse,
    )
