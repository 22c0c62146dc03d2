"""Entering and leaving the masked world inside ``nn.Sequential``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_data

__all__ = ["MaskFromValue", "Unwrap"]


class MaskFromValue(nn.Module):
    """Keras ``Masking(mask_value)``: mask the timesteps whose features all equal ``mask_value``.

    Takes a plain tensor ``(N, T, F)`` (or a ``Masked``, whose mask is then
    combined by logical and) and returns ``Masked(data, mask (N, T, 1))`` with
    exactly 0 at masked steps. ``mask_value`` may be NaN, which Keras' ``Masking``
    cannot handle (NaN != NaN there).

    Args:
        mask_value: the padding value.
        feature_dim: the dimension whose elements must all equal ``mask_value``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])
        >>> MaskFromValue(0.0)(x).mask[..., 0]
        tensor([[ True, False]])
    """

    def __init__(self, mask_value: float = 0.0, feature_dim: int = -1) -> None:
        super().__init__()
        self.mask_value = mask_value
        self.feature_dim = feature_dim

    def extra_repr(self) -> str:
        return f"mask_value={self.mask_value}, feature_dim={self.feature_dim}"

    def forward(self, x: Masked | Tensor) -> Masked:
        prior = x.mask if isinstance(x, Masked) else None
        data = check_data("MaskFromValue", x.data if isinstance(x, Masked) else x)
        if isinstance(self.mask_value, float) and math.isnan(self.mask_value):
            pad = torch.isnan(data)
        else:
            pad = data == self.mask_value
        if prior is not None:
            pad = pad | ~prior.expand(data.shape)
        valid = ~pad.all(dim=self.feature_dim, keepdim=True)
        return Masked(torch.where(valid, data, torch.zeros((), dtype=data.dtype, device=data.device)), valid)


class Unwrap(nn.Module):
    """Leave the masked world: return the data of a ``Masked`` (exactly 0 at masked positions).

    Use it between masknn layers and plain PyTorch layers in ``nn.Sequential``.
    The data is made canonical (zeros at masked positions) so that a plain
    layer never sees the garbage a masked input may hold.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> Unwrap()(Masked(torch.tensor([1.0, float("nan")]), torch.tensor([True, False])))
        tensor([1., 0.])
    """

    def forward(self, x: Masked | Tensor) -> Tensor:
        x = as_masked("Unwrap", x)
        return x.filled(0.0)
