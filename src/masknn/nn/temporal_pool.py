"""Masked temporal pooling Module."""

from __future__ import annotations

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_int
from masknn.functional.temporal_pool import POOL_MODES, temporal_pool

__all__ = ["MaskedTemporalPool"]


class MaskedTemporalPool(nn.Module):
    """Pool a masked sequence over time: mean, max or last valid step.

    Args:
        mode: ``"mean"`` (mean of the valid steps), ``"max"`` (max over the
            valid steps) or ``"last"`` (the value at the last valid step, like a
            Keras-masked RNN's final output).
        time_dim: the time dimension (1 for ``(N, T, F)``, 0 for ``(T, N, F)``).

    Input ``Masked`` ``(N, T, F)`` with a step mask ``(N, T, 1)``/``(N, T)`` or
    a per-feature mask; output ``Masked`` ``(N, F)``, valid where at least one
    step was valid; a sequence with no valid step gives 0, never NaN.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> pool = MaskedTemporalPool("last")
        >>> x = Masked.from_lengths(torch.arange(6.0).view(1, 3, 2), [2])
        >>> pool(x).data
        tensor([[2., 3.]])
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
        x = as_masked("MaskedTemporalPool", input)
        return temporal_pool("MaskedTemporalPool", x.data, x.mask, self.mode, self.time_dim)
