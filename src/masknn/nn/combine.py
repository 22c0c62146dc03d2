"""Combining Modules: add (residual, union of masks), multiply (intersection), concatenate."""

from __future__ import annotations

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_int
from masknn.functional.combine import add, cat, mul

__all__ = ["MaskedAdd", "MaskedCat", "MaskedMul"]


class MaskedAdd(nn.Module):
    """``a + b`` for two ``Masked``: masked terms count as 0, valid where either is valid.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> a = Masked(torch.ones(1, 2), torch.tensor([[True, False]]))
        >>> MaskedAdd()(a, a).data
        tensor([[2., 0.]])
    """

    def forward(self, a: Masked | Tensor, b: Masked | Tensor) -> Masked:
        a, b = as_masked("MaskedAdd", a), as_masked("MaskedAdd", b)
        return add("MaskedAdd", a.data, a.mask, b.data, b.mask)


class MaskedMul(nn.Module):
    """``a * b`` for two ``Masked``: valid where both are valid, exactly 0 elsewhere.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> a = Masked(torch.full((1, 2), 3.0), torch.tensor([[True, False]]))
        >>> MaskedMul()(a, Masked(torch.full((1, 2), 2.0))).data
        tensor([[6., 0.]])
    """

    def forward(self, a: Masked | Tensor, b: Masked | Tensor) -> Masked:
        a, b = as_masked("MaskedMul", a), as_masked("MaskedMul", b)
        return mul("MaskedMul", a.data, a.mask, b.data, b.mask)


class MaskedCat(nn.Module):
    """Concatenate ``Masked`` inputs along ``dim``: ``MaskedCat(1)(a, b, c)`` or ``MaskedCat(1)([a, b, c])``.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> a = Masked(torch.randn(2, 3, 4, 4), torch.rand(2, 1, 4, 4) > 0.5)
        >>> out = MaskedCat(dim=1)(a, a)
        >>> out.data.shape, out.mask.shape
        (torch.Size([2, 6, 4, 4]), torch.Size([2, 6, 4, 4]))
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        check_int("MaskedCat", "dim", dim)
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, *xs: Masked | Tensor | list[Masked | Tensor] | tuple[Masked | Tensor, ...]) -> Masked:
        items: list[Masked | Tensor]
        if len(xs) == 1 and isinstance(xs[0], (list, tuple)) and not isinstance(xs[0], Masked):
            items = list(xs[0])
        else:
            items = list(xs)  # type: ignore[arg-type]
        ms = [as_masked("MaskedCat", i) for i in items]
        return cat("MaskedCat", [m.data for m in ms], [m.mask for m in ms], self.dim)
