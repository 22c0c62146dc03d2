"""Dense head Modules: masked Linear and Flatten."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_int
from masknn.functional.linear import _MODES, flatten, linear
from masknn.nn._checks import construct

__all__ = ["MaskedFlatten", "MaskedLinear"]


class MaskedLinear(nn.Linear):
    """A ``torch.nn.Linear`` on the valid input features; see [`masknn.functional.masked_linear`][].

    Args:
        in_features: as ``nn.Linear``.
        out_features: as ``nn.Linear``.
        bias: as ``nn.Linear``.
        mode: ``"zero"`` (pre-masking: masked features count as 0) or ``"partial"``
            (the product rescaled by ``in_features / valid count``).
        **kwargs: ``device`` and ``dtype``, as ``nn.Linear``.

    The output mask is ``(*, 1)``: valid where at least one input feature is.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> layer = MaskedLinear(4, 2, mode="partial")
        >>> out = layer(Masked(torch.randn(3, 4), torch.rand(3, 4) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([3, 2]), torch.Size([3, 1]))
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, mode: str = "zero", **kwargs: Any
    ) -> None:
        layer = "MaskedLinear"
        if mode not in _MODES:
            raise ValueError(f"{layer}: mode must be one of {_MODES}, got {mode!r}")
        check_int(layer, "in_features", in_features, 0)
        check_int(layer, "out_features", out_features, 0)
        construct(layer, super().__init__, in_features, out_features, bias, **kwargs)
        self.mode = mode

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode!r}"

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked("MaskedLinear", x)
        return linear("MaskedLinear", x.data, x.mask, self.weight, self.bias, self.mode)


class MaskedFlatten(nn.Flatten):
    """``torch.nn.Flatten`` for ``Masked``: the mask is flattened with the data.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> out = MaskedFlatten()(Masked(torch.randn(2, 3, 4, 4), torch.rand(2, 1, 4, 4) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([2, 48]), torch.Size([2, 48]))
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        check_int("MaskedFlatten", "start_dim", start_dim)
        check_int("MaskedFlatten", "end_dim", end_dim)
        super().__init__(start_dim, end_dim)

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked("MaskedFlatten", x)
        return flatten("MaskedFlatten", x.data, x.mask, self.start_dim, self.end_dim)
