"""Normalization Modules over valid positions only; weights and buffers as their ``torch.nn`` twins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_int, check_number, shape_str
from masknn.functional.normalization import batch_norm, group_norm, instance_norm, layer_norm
from masknn.nn._checks import check_device, construct

__all__ = [
    "MaskedBatchNorm1d",
    "MaskedBatchNorm2d",
    "MaskedBatchNorm3d",
    "MaskedGroupNorm",
    "MaskedInstanceNorm1d",
    "MaskedInstanceNorm2d",
    "MaskedInstanceNorm3d",
    "MaskedLayerNorm",
]


def _check_dims(layer: str, x: Tensor, dims: tuple[int, ...], names: str) -> None:
    if x.dim() not in dims:
        raise ValueError(f"{layer}: expected data {names}, got shape {shape_str(x.shape)}")


def _check_channels_and_dtype(layer: str, x: Tensor, num_features: int, weight: Tensor | None) -> None:
    if x.shape[1] != num_features:
        raise ValueError(
            f"{layer}: expected {num_features} channels (num_features), got data shape {shape_str(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{layer}: expected floating point data, got dtype {x.dtype}")
    # float16/bfloat16 data with float32 parameters is fine (statistics are computed in float32).
    if weight is not None and x.dtype != weight.dtype and x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(
            f"{layer}: data {shape_str(x.shape)} is {x.dtype} but the parameters are {weight.dtype}; "
            "convert one of them"
        )


def check_norm_args(layer: str, num_features: object, eps: object, momentum: object) -> None:
    """The arguments every batch and instance norm takes, checked at construction."""
    check_int(layer, "num_features", num_features, 1)
    check_number(layer, "eps", eps, 0.0)
    if momentum is not None:
        check_number(layer, "momentum", momentum, 0.0, 1.0)


class _MaskedBatchNorm(nn.modules.batchnorm._BatchNorm):
    _dims: tuple[int, ...] = ()
    _names = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        layer = type(self).__name__
        check_norm_args(layer, num_features, eps, momentum)
        construct(
            layer, super().__init__, num_features, eps, momentum, affine, track_running_stats, device, dtype
        )

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        layer = type(self).__name__
        x = as_masked(layer, x)
        _check_dims(layer, x.data, self._dims, self._names)
        check_device(layer, x.data, self)
        _check_channels_and_dtype(layer, x.data, self.num_features, self.weight)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        # Counted (and, with momentum=None, averaged over) only batches with a valid element.
        counter = self.num_batches_tracked if self.training and self.track_running_stats else None
        return batch_norm(
            layer,
            x.data,
            x.mask,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            self.momentum,
            self.eps,
            counter,
        )


class MaskedBatchNorm1d(_MaskedBatchNorm, nn.BatchNorm1d):
    """Batch normalization of ``(N, C)`` or ``(N, C, L)`` over valid elements (as ``nn.BatchNorm1d``).

    Running statistics are updated from valid values only (see
    [`masknn.functional.masked_batch_norm`][]); eval mode and ``track_running_stats``
    behave as in torch, ``momentum=None`` as explained in ``MaskedBatchNorm2d``.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> bn = MaskedBatchNorm1d(3)
        >>> bn(Masked(torch.randn(4, 3, 10), torch.rand(4, 1, 10) > 0.3)).data.shape
        torch.Size([4, 3, 10])
    """

    _dims = (2, 3)
    _names = "(N, C) or (N, C, L)"


class MaskedBatchNorm2d(_MaskedBatchNorm, nn.BatchNorm2d):
    """Batch normalization of ``(N, C, H, W)`` over valid elements (as ``torch.nn.BatchNorm2d``).

    Each channel's statistics are taken over the valid elements of the batch; running
    statistics are updated from valid values only, with torch's momentum, unbiased
    running variance and eval-mode behaviour. A ``nn.BatchNorm2d`` ``state_dict`` loads
    unchanged.

    A training batch with no valid element (fully masked, or no sample at all) changes
    no state: ``num_batches_tracked`` counts the batches that hold a valid element, so
    ``momentum=None`` (the cumulative average ``1 / num_batches_tracked``) averages over
    the batches with data, equal to ``nn.BatchNorm2d`` fed only those. The count is per
    batch, not per channel: a channel with no valid element in a batch that has some
    elsewhere keeps its statistics for that batch, and its average then weighs its later
    batches slightly more than a per-channel count would. A batch of 0 samples returns an
    empty output, as ``nn.BatchNorm2d`` (which counts it in ``num_batches_tracked``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> bn = MaskedBatchNorm2d(3)
        >>> out = bn(Masked(torch.randn(4, 3, 6, 6), torch.rand(4, 1, 6, 6) > 0.3))
        >>> out.data.shape, bn.num_batches_tracked.item()
        (torch.Size([4, 3, 6, 6]), 1)
    """

    _dims = (4,)
    _names = "(N, C, H, W)"


class MaskedBatchNorm3d(_MaskedBatchNorm, nn.BatchNorm3d):
    """Batch normalization of ``(N, C, D, H, W)`` over valid elements (as ``torch.nn.BatchNorm3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 2, 3, 3, 3), torch.rand(2, 1, 3, 3, 3) > 0.3)
        >>> MaskedBatchNorm3d(2)(x).data.shape
        torch.Size([2, 2, 3, 3, 3])
    """

    _dims = (5,)
    _names = "(N, C, D, H, W)"


class _MaskedInstanceNorm(nn.modules.instancenorm._InstanceNorm):
    _dims: tuple[int, ...] = ()
    _names = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        layer = type(self).__name__
        check_norm_args(layer, num_features, eps, momentum)
        construct(
            layer, super().__init__, num_features, eps, momentum, affine, track_running_stats, device, dtype
        )

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        layer = type(self).__name__
        x = as_masked(layer, x)
        _check_dims(layer, x.data, self._dims, self._names)
        check_device(layer, x.data, self)
        if (
            self.num_features
            and x.data.shape[1] != self.num_features
            and (self.affine or self.track_running_stats)
        ):
            raise ValueError(
                f"{layer}: expected {self.num_features} channels, got data shape {shape_str(x.data.shape)}"
            )
        if not x.data.is_floating_point():
            raise TypeError(f"{layer}: expected floating point data, got dtype {x.data.dtype}")
        use_input_stats = self.training or not self.track_running_stats
        return instance_norm(
            layer,
            x.data,
            x.mask,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_input_stats,
            self.momentum if self.momentum is not None else 0.0,  # as torch
            self.eps,
        )


class MaskedInstanceNorm1d(_MaskedInstanceNorm, nn.InstanceNorm1d):
    """Instance normalization of ``(N, C, L)`` over valid elements (as ``torch.nn.InstanceNorm1d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedInstanceNorm1d(3)(Masked(torch.randn(2, 3, 8), torch.rand(2, 1, 8) > 0.3)).data.shape
        torch.Size([2, 3, 8])
    """

    _dims = (3,)
    _names = "(N, C, L)"


class MaskedInstanceNorm2d(_MaskedInstanceNorm, nn.InstanceNorm2d):
    """Instance normalization of ``(N, C, H, W)`` over the valid elements of each (sample, channel).

    As ``torch.nn.InstanceNorm2d`` (``affine``, ``track_running_stats``; running
    statistics from valid values only).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 3, 4, 4), torch.rand(2, 1, 4, 4) > 0.3)
        >>> MaskedInstanceNorm2d(3, affine=True)(x).data.shape
        torch.Size([2, 3, 4, 4])
    """

    _dims = (4,)
    _names = "(N, C, H, W)"


class MaskedInstanceNorm3d(_MaskedInstanceNorm, nn.InstanceNorm3d):
    """Instance normalization of ``(N, C, D, H, W)`` over valid elements (as ``nn.InstanceNorm3d``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 2, 3, 3, 3), torch.rand(2, 1, 3, 3, 3) > 0.3)
        >>> MaskedInstanceNorm3d(2)(x).data.shape
        torch.Size([2, 2, 3, 3, 3])
    """

    _dims = (5,)
    _names = "(N, C, D, H, W)"


class MaskedGroupNorm(nn.GroupNorm):
    """Group normalization over the valid elements of each (sample, group) (as ``torch.nn.GroupNorm``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> MaskedGroupNorm(2, 4)(Masked(torch.randn(2, 4, 5, 5), torch.rand(2, 1, 5, 5) > 0.3)).data.shape
        torch.Size([2, 4, 5, 5])
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        layer = "MaskedGroupNorm"
        check_int(layer, "num_groups", num_groups, 1)
        check_int(layer, "num_channels", num_channels, 1)
        check_number(layer, "eps", eps, 0.0)
        if num_channels % num_groups:
            raise ValueError(
                f"{layer}: num_channels ({num_channels}) must be divisible by num_groups ({num_groups})"
            )
        construct(layer, super().__init__, num_groups, num_channels, eps, affine, device, dtype)

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked("MaskedGroupNorm", x)
        check_device("MaskedGroupNorm", x.data, self)
        if x.data.dim() < 2 or x.data.shape[1] != self.num_channels:
            raise ValueError(
                f"MaskedGroupNorm: expected data (N, {self.num_channels}, ...), "
                f"got shape {shape_str(x.data.shape)}"
            )
        return group_norm(
            "MaskedGroupNorm", x.data, x.mask, self.num_groups, self.weight, self.bias, self.eps
        )


class MaskedLayerNorm(nn.LayerNorm):
    """Layer normalization over the valid elements of the last dimensions (as ``torch.nn.LayerNorm``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 5, 8), torch.rand(2, 5, 8) > 0.3)
        >>> MaskedLayerNorm(8)(x).data.shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        layer = "MaskedLayerNorm"
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        if not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) == 0:
            raise TypeError(
                f"{layer}: expected normalized_shape as an int or a non-empty sequence of ints, "
                f"got {normalized_shape!r}"
            )
        for v in shape:
            check_int(layer, "normalized_shape entries", v, 1)
        check_number(layer, "eps", eps, 0.0)
        construct(layer, super().__init__, normalized_shape, eps, elementwise_affine, bias, device, dtype)

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked("MaskedLayerNorm", x)
        check_device("MaskedLayerNorm", x.data, self)
        return layer_norm(
            "MaskedLayerNorm", x.data, x.mask, self.normalized_shape, self.weight, self.bias, self.eps
        )
