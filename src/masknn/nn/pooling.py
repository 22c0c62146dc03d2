"""Pooling Modules over valid positions (DESIGN §4): max, average, adaptive, global."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn.functional import pooling as P
from masknn.nn._checks import construct

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
    _nd: int
    kernel_size: Any
    stride: Any
    padding: Any
    dilation: Any
    ceil_mode: bool
    return_indices: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        layer = type(self).__name__
        construct(layer, super().__init__, *args, **kwargs)
        _no_indices(layer, self.return_indices)
        P.window_args(
            layer, self._nd, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, "max"
        )

    def forward(self, x: Masked | Tensor) -> Masked:
        layer = type(self).__name__
        x = as_masked(layer, x)
        return P.max_pool(
            layer,
            self._nd,
            x.data,
            x.mask,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
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

    _nd = 1


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

    _nd = 2


class MaskedMaxPool3d(_MaxPool, nn.MaxPool3d):
    """Max over the valid inputs of each window (arguments as ``torch.nn.MaxPool3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedMaxPool3d(2)(Masked(torch.randn(1, 2, 4, 4, 4), torch.rand(1, 1, 4, 4, 4) > 0.5)).data.shape
        torch.Size([1, 2, 2, 2, 2])
    """

    _nd = 3


class _AvgPool:
    _nd: int
    kernel_size: Any
    stride: Any
    padding: Any
    ceil_mode: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        layer = type(self).__name__
        construct(layer, super().__init__, *args, **kwargs)
        if getattr(self, "divisor_override", None) is not None:
            raise ValueError(f"{layer}: divisor_override is not supported (the divisor is the valid count)")
        P.window_args(layer, self._nd, self.kernel_size, self.stride, self.padding, 1, self.ceil_mode, "avg")

    def forward(self, x: Masked | Tensor) -> Masked:
        layer = type(self).__name__
        x = as_masked(layer, x)
        return P.avg_pool(
            layer, self._nd, x.data, x.mask, self.kernel_size, self.stride, self.padding, self.ceil_mode
        )


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

    _nd = 1


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

    _nd = 2


class MaskedAvgPool3d(_AvgPool, nn.AvgPool3d):  # type: ignore[misc]
    """Mean over the valid inputs of each window (arguments as ``torch.nn.AvgPool3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedAvgPool3d(2)(Masked(torch.randn(1, 2, 4, 4, 4), torch.rand(1, 1, 4, 4, 4) > 0.5)).data.shape
        torch.Size([1, 2, 2, 2, 2])
    """

    _nd = 3


class _Adaptive:
    _nd: int
    _max: bool = False
    output_size: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        layer = type(self).__name__
        construct(layer, super().__init__, *args, **kwargs)
        if getattr(self, "return_indices", False):
            _no_indices(layer, True)
        P.check_output_size(layer, self._nd, self.output_size)

    def forward(self, x: Masked | Tensor) -> Masked:
        layer = type(self).__name__
        x = as_masked(layer, x)
        fn = P.adaptive_max if self._max else P.adaptive_avg
        return fn(layer, self._nd, x.data, x.mask, self.output_size)


class MaskedAdaptiveAvgPool1d(_Adaptive, nn.AdaptiveAvgPool1d):  # type: ignore[misc]
    """Adaptive mean over valid inputs (as ``torch.nn.AdaptiveAvgPool1d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedAdaptiveAvgPool1d(1)(Masked(torch.tensor([[[1.0, 7.0, 3.0]]]),
        ...                                   torch.tensor([[[True, False, True]]]))).data
        tensor([[[2.]]])
    """

    _nd = 1


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

    _nd = 2


class MaskedAdaptiveAvgPool3d(_Adaptive, nn.AdaptiveAvgPool3d):  # type: ignore[misc]
    """Adaptive mean over valid inputs (as ``torch.nn.AdaptiveAvgPool3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(1, 2, 3, 3, 3), torch.ones(1, 1, 3, 3, 3))
        >>> MaskedAdaptiveAvgPool3d(1)(x).data.shape
        torch.Size([1, 2, 1, 1, 1])
    """

    _nd = 3


class MaskedAdaptiveMaxPool1d(_Adaptive, nn.AdaptiveMaxPool1d):
    """Adaptive max over valid inputs (as ``torch.nn.AdaptiveMaxPool1d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedAdaptiveMaxPool1d(1)(Masked(torch.tensor([[[1.0, 7.0, 3.0]]]),
        ...                                   torch.tensor([[[True, False, True]]]))).data
        tensor([[[3.]]])
    """

    _nd = 1
    _max = True


class MaskedAdaptiveMaxPool2d(_Adaptive, nn.AdaptiveMaxPool2d):
    """Adaptive max over valid inputs (as ``torch.nn.AdaptiveMaxPool2d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 3, 5, 5), torch.rand(2, 1, 5, 5) > 0.5)
        >>> MaskedAdaptiveMaxPool2d(1)(x).data.shape
        torch.Size([2, 3, 1, 1])
    """

    _nd = 2
    _max = True


class MaskedAdaptiveMaxPool3d(_Adaptive, nn.AdaptiveMaxPool3d):
    """Adaptive max over valid inputs (as ``torch.nn.AdaptiveMaxPool3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(1, 2, 3, 3, 3), torch.ones(1, 1, 3, 3, 3))
        >>> MaskedAdaptiveMaxPool3d(1)(x).data.shape
        torch.Size([1, 2, 1, 1, 1])
    """

    _nd = 3
    _max = True


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
        return P.global_avg_pool("MaskedGlobalAvgPool", x.data, x.mask)


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
        return P.global_max_pool("MaskedGlobalMaxPool", x.data, x.mask)
