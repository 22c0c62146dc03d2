"""Masked temporal pooling: mean, max or last valid step over time."""

from __future__ import annotations

import torch
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, check_dim, shape_str, to_bool_mask
from masknn.functional._select import select
from masknn.functional.reductions import masked_max, masked_mean

__all__ = ["POOL_MODES", "masked_temporal_pool"]

POOL_MODES = ("mean", "max", "last")


def temporal_pool(op: str, x: Tensor, mask: object, mode: str, time_dim: int) -> Masked:
    """[`masked_temporal_pool`][masknn.functional.masked_temporal_pool] with errors naming ``op``."""
    x = check_data(op, x)
    if mode not in POOL_MODES:
        raise ValueError(f"{op}: mode must be one of {POOL_MODES}, got {mode!r}")
    if x.dim() < 2:
        raise ValueError(f"{op}: expected data with a time dimension, got {shape_str(x.shape)}")
    td = check_dim(op, "time_dim", time_dim, x.dim())
    m = to_bool_mask(op, x, mask)
    if mode == "mean":
        return masked_mean(x, m, dim=td)
    if mode == "max":
        return masked_max(x, m, dim=td)
    t = x.shape[td]
    out_shape = [v for i, v in enumerate(x.shape) if i != td]
    if t == 0:  # no step at all: nothing is valid (as "mean" and "max")
        zeros = torch.zeros(out_shape, dtype=x.dtype, device=x.device)
        return Masked(zeros, torch.zeros(out_shape, dtype=torch.bool, device=x.device))
    shape = [1] * x.dim()
    shape[td] = t
    steps = torch.arange(t, device=x.device).view(shape)
    # The last valid step per sequence (-1 where none), on the mask as given (not expanded).
    last = torch.where(m, steps, -1).amax(td, keepdim=True)
    valid = last >= 0
    index = last.clamp(min=0).expand([1 if i == td else v for i, v in enumerate(x.shape)])
    val = select(x.gather(td, index), valid)
    return Masked(val.squeeze(td), valid.squeeze(td).expand(out_shape))


def masked_temporal_pool(x: Tensor, mask: object, mode: str = "mean", time_dim: int = 1) -> Masked:
    """Pool a masked sequence over time: ``"mean"``, ``"max"`` or ``"last"`` valid step.

    ``x`` is ``(N, T, F)`` (or any shape, time along ``time_dim``); ``mask`` is a
    step mask ``(N, T)``/``(N, T, 1)`` or a per-feature mask ``(N, T, F)``
    (pooled per feature); ``(T, N)`` is accepted with ``time_dim=0``.
    ``time_dim`` indexes ``x`` as given, like ``torch.mean``'s ``dim``, whatever
    its number of dimensions: a 2-d ``x`` is pooled along ``time_dim`` (``(N, T)``
    scalar steps with the default ``time_dim=1``); pool one unbatched ``(T, F)``
    sequence with ``time_dim=0``. (The Module
    [`MaskedTemporalPool`][masknn.nn.MaskedTemporalPool] takes 2-d input as that
    unbatched ``(T, F)`` sequence, as ``nn.LSTM`` does, and pools it over time.) Returns
    ``Masked`` data without the time dimension, e.g. ``(N, F)``, valid where at
    least one step was valid; a sequence with no valid step gives 0 (never NaN).
    ``"last"`` takes the value at the last valid step (the final output of a
    Keras-masked RNN); its gradient reaches that step only. With no time step at all
    (``T = 0``) every mode gives zeros with a False mask.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0], [5.0], [3.0]], [[2.0], [4.0], [6.0]]])
        >>> m = torch.tensor([[1, 1, 0], [0, 0, 0]])
        >>> masked_temporal_pool(x, m, "mean").data
        tensor([[3.],
                [0.]])
        >>> masked_temporal_pool(x, m, "last").data[0], masked_temporal_pool(x, m, "max").mask[:, 0]
        (tensor([5.]), tensor([ True, False]))
    """
    return temporal_pool("masked_temporal_pool", x, mask, mode, time_dim)
