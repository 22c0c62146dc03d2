"""Pooling Modules over valid positions (DESIGN §4): max, average, adaptive, global."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn.functional import pooling as P

__all__ = [
    "MaskedAdaptiveAvgPool1d",
    "MaskedAdaptiveAvgPool2d",
    "MaskedAdaptiveAvgPool3d",
    "MaskedAdaptiveMaxPool1d",
    "MaskedAdaptiveMaxPool2d",
    "MaskedAdaptiveMaxPool3d",
    "MaskedAvgPool1d",
    "MaskedAvgPool2d",
    "MaskedAvgPool3d",
    "MaskedGlobalAvgPool",
    "MaskedGlobalMaxPool",
    "MaskedMaxPool1d",
    "MaskedMaxPool2d",
    "MaskedMaxPool3d",
]


def _no_indices(layer: str, return_indices: bool) -> None:
    if return_indices:
        raise ValueError(f"{layer}: return_indices=True is not supported")


class _MaxPool:
    _fn: Any
    kernel_size: Any
    stride: Any
    padding: Any
    dilation: Any
    ceil_mode: bool

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked(type(self).__name__, x)
        return type(self)._fn(
            x.data, x.mask, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode
        )


class MaskedMaxPool1d(_MaxPool, nn.MaxPool1d):
    """Max over the valid inputs of each window (arguments as ``torch.nn.MaxPool1d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedMaxPool1d(2)(Masked(torch.tensor([[[1.0, 7.0, 3.0, 4.0]]]),
        ...                           torch.tensor([[[True, False, False, False]]]))).data
        tensor([[[1., 0.]]])
    """

    _fn = staticmethod(P.masked_max_pool1d)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_indices("MaskedMaxPool1d", self.return_indices)


class MaskedMaxPool2d(_MaxPool, nn.MaxPool2d):
    """Max over the valid inputs of each window (arguments as ``torch.nn.MaxPool2d``).

    Valid where the window holds a valid input (padding counts as masked); exactly 0
    elsewhere. A channel-shared mask stays channel-shared.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> out = MaskedMaxPool2d(2)(Masked(torch.randn(2, 3, 8, 8), torch.rand(2, 1, 8, 8) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([2, 3, 4, 4]), torch.Size([2, 1, 4, 4]))
    """

    _fn = staticmethod(P.masked_max_pool2d)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_indices("MaskedMaxPool2d", self.return_indices)


class MaskedMaxPool3d(_MaxPool, nn.MaxPool3d):
    """Max over the valid inputs of each window (arguments as ``torch.nn.MaxPool3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedMaxPool3d(2)(Masked(torch.randn(1, 2, 4, 4, 4), torch.rand(1, 1, 4, 4, 4) > 0.5)).data.shape
        torch.Size([1, 2, 2, 2, 2])
    """

    _fn = staticmethod(P.masked_max_pool3d)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_indices("MaskedMaxPool3d", self.return_indices)


class _AvgPool:
    _fn: Any
    kernel_size: Any
    stride: Any
    padding: Any
    ceil_mode: bool

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked(type(self).__name__, x)
        return type(self)._fn(x.data, x.mask, self.kernel_size, self.stride, self.padding, self.ceil_mode)


def _no_divisor(layer: str, module: nn.Module) -> None:
    if getattr(module, "divisor_override", None) is not None:
        raise ValueError(f"{layer}: divisor_override is not supported (the divisor is the valid count)")


class MaskedAvgPool1d(_AvgPool, nn.AvgPool1d):  # type: ignore[misc]
    """Mean over the valid inputs of each window (arguments as ``torch.nn.AvgPool1d``).

    Padding always counts as masked; ``count_include_pad`` is accepted and ignored.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedAvgPool1d(2)(Masked(torch.tensor([[[1.0, 7.0, 3.0, 5.0]]]),
        ...                           torch.tensor([[[True, False, True, True]]]))).data
        tensor([[[1., 4.]]])
    """

    _fn = staticmethod(P.masked_avg_pool1d)


class MaskedAvgPool2d(_AvgPool, nn.AvgPool2d):  # type: ignore[misc]
    """Mean over the valid inputs of each window (arguments as ``torch.nn.AvgPool2d``).

    Padding always counts as masked; ``count_include_pad`` is accepted and ignored;
    ``divisor_override`` is refused.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> out = MaskedAvgPool2d(2)(Masked(torch.randn(2, 3, 8, 8), torch.rand(2, 1, 8, 8) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([2, 3, 4, 4]), torch.Size([2, 1, 4, 4]))
    """

    _fn = staticmethod(P.masked_avg_pool2d)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_divisor("MaskedAvgPool2d", self)


class MaskedAvgPool3d(_AvgPool, nn.AvgPool3d):  # type: ignore[misc]
    """Mean over the valid inputs of each window (arguments as ``torch.nn.AvgPool3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedAvgPool3d(2)(Masked(torch.randn(1, 2, 4, 4, 4), torch.rand(1, 1, 4, 4, 4) > 0.5)).data.shape
        torch.Size([1, 2, 2, 2, 2])
    """

    _fn = staticmethod(P.masked_avg_pool3d)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_divisor("MaskedAvgPool3d", self)


class _Adaptive:
    _fn: Any
    output_size: Any

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked(type(self).__name__, x)
        return type(self)._fn(x.data, x.mask, self.output_size)


class MaskedAdaptiveAvgPool1d(_Adaptive, nn.AdaptiveAvgPool1d):  # type: ignore[misc]
    """Adaptive mean over valid inputs (as ``torch.nn.AdaptiveAvgPool1d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedAdaptiveAvgPool1d(1)(Masked(torch.tensor([[[1.0, 7.0, 3.0]]]),
        ...                                   torch.tensor([[[True, False, True]]]))).data
        tensor([[[2.]]])
    """

    _fn = staticmethod(P.masked_adaptive_avg_pool1d)


class MaskedAdaptiveAvgPool2d(_Adaptive, nn.AdaptiveAvgPool2d):  # type: ignore[misc]
    """Adaptive mean over valid inputs (as ``torch.nn.AdaptiveAvgPool2d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 3, 7, 7), torch.rand(2, 1, 7, 7) > 0.5)
        >>> out = MaskedAdaptiveAvgPool2d((2, 2))(x)
        >>> out.data.shape
        torch.Size([2, 3, 2, 2])
    """

    _fn = staticmethod(P.masked_adaptive_avg_pool2d)


class MaskedAdaptiveAvgPool3d(_Adaptive, nn.AdaptiveAvgPool3d):  # type: ignore[misc]
    """Adaptive mean over valid inputs (as ``torch.nn.AdaptiveAvgPool3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(1, 2, 3, 3, 3), torch.ones(1, 1, 3, 3, 3))
        >>> MaskedAdaptiveAvgPool3d(1)(x).data.shape
        torch.Size([1, 2, 1, 1, 1])
    """

    _fn = staticmethod(P.masked_adaptive_avg_pool3d)


class MaskedAdaptiveMaxPool1d(_Adaptive, nn.AdaptiveMaxPool1d):
    """Adaptive max over valid inputs (as ``torch.nn.AdaptiveMaxPool1d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedAdaptiveMaxPool1d(1)(Masked(torch.tensor([[[1.0, 7.0, 3.0]]]),
        ...                                   torch.tensor([[[True, False, True]]]))).data
        tensor([[[3.]]])
    """

    _fn = staticmethod(P.masked_adaptive_max_pool1d)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_indices("MaskedAdaptiveMaxPool1d", self.return_indices)


class MaskedAdaptiveMaxPool2d(_Adaptive, nn.AdaptiveMaxPool2d):
    """Adaptive max over valid inputs (as ``torch.nn.AdaptiveMaxPool2d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 3, 5, 5), torch.rand(2, 1, 5, 5) > 0.5)
        >>> MaskedAdaptiveMaxPool2d(1)(x).data.shape
        torch.Size([2, 3, 1, 1])
    """

    _fn = staticmethod(P.masked_adaptive_max_pool2d)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_indices("MaskedAdaptiveMaxPool2d", self.return_indices)


class MaskedAdaptiveMaxPool3d(_Adaptive, nn.AdaptiveMaxPool3d):
    """Adaptive max over valid inputs (as ``torch.nn.AdaptiveMaxPool3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(1, 2, 3, 3, 3), torch.ones(1, 1, 3, 3, 3))
        >>> MaskedAdaptiveMaxPool3d(1)(x).data.shape
        torch.Size([1, 2, 1, 1, 1])
    """

    _fn = staticmethod(P.masked_adaptive_max_pool3d)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_indices("MaskedAdaptiveMaxPool3d", self.return_indices)


class MaskedGlobalAvgPool(nn.Module):
    """Mean over every dimension after the channel dimension: ``(N, C, ...) -> Masked (N, C)``.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> out = MaskedGlobalAvgPool()(Masked(torch.randn(2, 3, 5, 5), torch.rand(2, 1, 5, 5) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked("MaskedGlobalAvgPool", x)
        return P.masked_global_avg_pool(x.data, x.mask)


class MaskedGlobalMaxPool(nn.Module):
    """Max over every dimension after the channel dimension: ``(N, C, ...) -> Masked (N, C)``.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedGlobalMaxPool()(Masked(torch.randn(2, 3, 5, 5), torch.rand(2, 1, 5, 5) > 0.5)).data.shape
        torch.Size([2, 3])
    """

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked("MaskedGlobalMaxPool", x)
        return P.masked_global_max_pool(x.data, x.mask)
