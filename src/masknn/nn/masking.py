"""Entering and leaving the masked world inside ``nn.Sequential``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_data, check_dim, check_int, check_number, to_bool_mask

__all__ = ["MaskFromValue", "Unwrap"]


class MaskFromValue(nn.Module):
    """Keras ``Masking(mask_value)``: mask the timesteps whose features all equal ``mask_value``.

    Takes a plain tensor ``(N, T, F)`` (or a ``Masked``, whose mask is then
    combined by logical and) and returns ``Masked(data, mask (N, T, 1))`` with
    exactly 0 at masked steps. ``mask_value`` may be NaN, which Keras' ``Masking``
    cannot handle (NaN != NaN there).

    A valid step keeps its features as they are, except the features that cannot be
    data: with a per-feature mask on the input (e.g. ``Masked.from_nan(x)``), the
    features it masks, and with ``mask_value`` NaN, the NaN features. Those become
    exactly 0 and receive no gradient: the step mask that comes out cannot mark them,
    so the next layer (a ``MaskedLSTM``) sees a zero-filled feature, never a NaN. A
    step is valid when any of its features is valid and differs from ``mask_value``.

    Args:
        mask_value: the padding value (a number; NaN allowed).
        feature_dim: the dimension whose elements must all equal ``mask_value``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])
        >>> MaskFromValue(0.0)(x).mask[..., 0]
        tensor([[ True, False]])
        >>> nan = float("nan")
        >>> y = MaskFromValue(nan)(torch.tensor([[[1.0, nan], [nan, nan]]]))
        >>> y.data, y.mask[..., 0]
        (tensor([[[1., 0.],
                 [0., 0.]]]), tensor([[ True, False]]))
    """

    def __init__(self, mask_value: float = 0.0, feature_dim: int = -1) -> None:
        super().__init__()
        check_number("MaskFromValue", "mask_value", mask_value)
        check_int("MaskFromValue", "feature_dim", feature_dim)
        self.mask_value = mask_value
        self.feature_dim = feature_dim

    def extra_repr(self) -> str:
        return f"mask_value={self.mask_value}, feature_dim={self.feature_dim}"

    def forward(self, x: Masked | Tensor) -> Masked:
        layer = "MaskFromValue"
        if not isinstance(x, Tensor):  # a Masked, or a plain (data, mask) tuple: validated
            x = as_masked(layer, x)
        prior = x.mask if isinstance(x, Masked) else None
        data = check_data(layer, x.data if isinstance(x, Masked) else x)
        d = check_dim(layer, "feature_dim", self.feature_dim, data.dim())
        if isinstance(self.mask_value, float) and math.isnan(self.mask_value):
            pad = torch.isnan(data)
            keep = ~pad  # a NaN feature is no data: zero-filled at valid steps too
        else:
            pad = data == self.mask_value
            keep = None  # Keras: a valid step keeps every feature as it is
        if prior is not None:
            prior = to_bool_mask(layer, data, prior)
            pad = pad | ~prior
            keep = prior if keep is None else keep & prior
        valid = ~pad.all(dim=d, keepdim=True)
        # Selected, never multiplied: the masked features' values (NaN) reach neither the
        # output nor, through the select's backward, a gradient.
        sel = valid if keep is None else valid & keep
        return Masked(torch.where(sel, data, torch.zeros((), dtype=data.dtype, device=data.device)), valid)


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
