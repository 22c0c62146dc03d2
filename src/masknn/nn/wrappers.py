"""Run any plain Module inside the masked world: post-masking and elementwise wrappers."""

from __future__ import annotations

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import shape_str
from masknn.functional._select import select

__all__ = ["Elementwise", "PostMask"]


class PostMask(nn.Module):
    """Post-masking: run ``module`` on the zero-filled data, keep the input mask, zero masked outputs.

    The wrapped module sees exactly 0 at masked positions (never the garbage they may
    hold) and its output must broadcast against the input mask (same number of
    dimensions, each dimension equal or 1). Use it for layers that act position by
    position (a 1x1 convolution, a per-timestep ``nn.Linear`` on a row mask ``(N, T, 1)``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> layer = PostMask(torch.nn.Conv2d(3, 5, 1))
        >>> out = layer(Masked(torch.randn(2, 3, 4, 4), torch.rand(2, 1, 4, 4) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([2, 5, 4, 4]), torch.Size([2, 1, 4, 4]))
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{type(self).__name__}: expected the module to wrap as an nn.Module, got "
                f"{type(module).__name__} (wrap a function with e.g. nn.ReLU(), or write a small nn.Module)"
            )
        self.module = module

    def _name(self) -> str:
        return f"{type(self).__name__}({type(self.module).__name__})"

    def _check(self, x: Masked, y: object) -> Tensor:
        if not isinstance(y, Tensor):
            raise TypeError(
                f"{self._name()}: the wrapped module must return a tensor, got {type(y).__name__}"
            )
        m = x.mask
        fits = m.dim() == y.dim() and all(a == b or a == 1 for a, b in zip(m.shape, y.shape))
        if not fits:
            raise ValueError(
                f"{self._name()}: the input mask shape {shape_str(m.shape)} does not fit the output "
                f"shape {shape_str(y.shape)}; the module must keep the masked dimensions"
            )
        return y

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked(self._name(), x)
        y = self._check(x, self.module(select(x.data, x.mask)))
        return Masked(select(y, x.mask), x.mask)


class Elementwise(PostMask):
    """One wrapper for every elementwise activation and for dropout: the mask passes through.

    ``Elementwise(nn.ReLU())``, ``Elementwise(nn.GELU())``, ``Elementwise(nn.Dropout(0.1))``:
    the module runs on the zero-filled data, its output must have the input's shape,
    and masked outputs are exactly 0 (so ``sigmoid(0) = 0.5`` never appears at a
    masked position).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.tensor([0.0, 9.0]), torch.tensor([True, False]))
        >>> out = Elementwise(torch.nn.Sigmoid())(x)
        >>> out.data, out.mask
        (tensor([0.5000, 0.0000]), tensor([ True, False]))
    """

    def _check(self, x: Masked, y: object) -> Tensor:
        if isinstance(y, Tensor) and y.shape != x.data.shape:
            raise ValueError(
                f"{self._name()}: an elementwise module must keep the shape; "
                f"input {shape_str(x.data.shape)}, "
                f"output {shape_str(y.shape)} (use PostMask for other modules)"
            )
        return super()._check(x, y)
