"""Time-distributed masked Linear (Keras ``TimeDistributed(Dense)`` that skips padded rows)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_int
from masknn.functional.time_distributed import td_linear
from masknn.nn._checks import construct

__all__ = ["TimeDistributedLinear"]


class TimeDistributedLinear(nn.Linear):
    """``nn.Linear`` applied to the valid rows only (gather, matmul, scatter).

    Arguments and parameters as ``torch.nn.Linear``, so its ``state_dict``
    loads unchanged. The input is a [`masknn.Masked`][] with data
    ``(*, in_features)`` (any leading shape) and a **row** mask ``(*, 1)``
    (``(N, T)`` accepted for ``(N, T, F)``). Masked rows cost nothing, output
    exactly 0 and keep their mask; the output mask is the input mask. With 50 %
    padding it runs about twice as fast as ``nn.Linear`` on the padded batch.

    A per-feature mask (last dimension ``> 1``) is an error pointing to
    ``masknn.nn.MaskedLinear``, the layer for masked *features*.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> layer = TimeDistributedLinear(4, 3)
        >>> x = Masked.from_lengths(torch.randn(2, 5, 4), [5, 2])
        >>> out = layer(x)
        >>> out.data.shape, bool((out.data[1, 2:] == 0).all())
        (torch.Size([2, 5, 3]), True)
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        layer = "TimeDistributedLinear"
        check_int(layer, "in_features", in_features, 0)
        check_int(layer, "out_features", out_features, 0)
        construct(layer, super().__init__, in_features, out_features, bias, device, dtype)

    def forward(self, input: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked("TimeDistributedLinear", input)
        return td_linear("TimeDistributedLinear", x.data, x.mask, self.weight, self.bias)
