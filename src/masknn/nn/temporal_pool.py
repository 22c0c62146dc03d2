"""Masked temporal pooling Module."""

from __future__ import annotations

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import OutOfRangeError, check_int, shape_str, to_bool_mask
from masknn.functional.temporal_pool import POOL_MODES, temporal_pool

__all__ = ["MaskedTemporalPool"]


class MaskedTemporalPool(nn.Module):
    """Pool a masked sequence over time: mean, max or last valid step.

    Args:
        mode: ``"mean"`` (mean of the valid steps), ``"max"`` (max over the
            valid steps) or ``"last"`` (the value at the last valid step, like a
            Keras-masked RNN's final output).
        time_dim: the time dimension of the *batched* input (1 for ``(N, T, F)``,
            0 for ``(T, N, F)``).

    Input ``Masked`` ``(N, T, F)`` with a step mask ``(N, T, 1)``/``(N, T)`` or
    a per-feature mask; output ``Masked`` ``(N, F)``, valid where at least one
    step was valid; a sequence with no valid step gives 0, never NaN.

    A 2-d input is one unbatched sequence ``(T, F)``, as for ``nn.LSTM`` and
    [`MaskedLSTM`][masknn.nn.MaskedLSTM] (whose unbatched output it is): the
    batched layout without its batch dimension, whatever ``time_dim`` says (dim 0
    of ``(N, T, F)``, dim 1 of ``(T, N, F)``). It is pooled over time, with a mask
    ``(T, 1)`` or ``(T, F)``; the output is ``(F,)``. (The functional
    [`masked_temporal_pool`][masknn.functional.masked_temporal_pool] takes
    ``time_dim`` as an index into the data as given, like ``torch.mean``; pass it
    ``time_dim=0`` for one ``(T, F)`` sequence.)

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> pool = MaskedTemporalPool("last")
        >>> x = Masked.from_lengths(torch.arange(6.0).view(1, 3, 2), [2])
        >>> pool(x).data
        tensor([[2., 3.]])
        >>> one = Masked(torch.arange(6.0).view(3, 2), torch.tensor([[True], [True], [False]]))
        >>> pool(one).data, pool(one).mask  # unbatched (T, F): over time
        (tensor([2., 3.]), tensor([True, True]))
    """

    def __init__(self, mode: str = "mean", time_dim: int = 1) -> None:
        super().__init__()
        if mode not in POOL_MODES:
            raise ValueError(f"MaskedTemporalPool: mode must be one of {POOL_MODES}, got {mode!r}")
        check_int("MaskedTemporalPool", "time_dim", time_dim)
        self.mode = mode
        self.time_dim = time_dim

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, time_dim={self.time_dim}"

    def forward(self, input: Masked | Tensor) -> Masked:
        name = "MaskedTemporalPool"
        x = as_masked(name, input)
        if not (isinstance(x.data, Tensor) and x.data.dim() == 2):
            return temporal_pool(name, x.data, x.mask, self.mode, self.time_dim)
        # One unbatched sequence (T, F): add the batched layout's batch dimension, pool, drop it.
        if not -3 <= self.time_dim < 3:
            raise OutOfRangeError(
                f"{name}: time_dim {self.time_dim} is out of range for one unbatched sequence "
                f"{shape_str(x.data.shape)} (T, F): time_dim is a dimension of the batched layout "
                "(N, T, F) or (T, N, F), expected a dimension in [-3, 2] (torch raises IndexError: "
                "Dimension out of range)"
            )
        m = to_bool_mask(name, x.data, x.mask)
        b = 1 if self.time_dim in (0, -3) else 0  # (T, N, F) keeps its batch second
        out = temporal_pool(name, x.data.unsqueeze(b), m.unsqueeze(b), self.mode, self.time_dim)
        return Masked(out.data.squeeze(0), out.mask.squeeze(0))
