"""Normalization Modules over valid positions only; weights and buffers as their ``torch.nn`` twins."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import shape_str
from masknn.functional.normalization import (
    masked_batch_norm,
    masked_group_norm,
    masked_instance_norm,
    masked_layer_norm,
)

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
    # float16/bfloat16 data with float32 parameters is fine (statistics are computed in float32).
    if weight is not None and x.dtype != weight.dtype and x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(
            f"{layer}: data {shape_str(x.shape)} is {x.dtype} but the parameters are {weight.dtype}; "
            "convert one of them"
        )


def _check_device(layer: str, x: Tensor, module: nn.Module) -> None:
    for name, t in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if t.device != x.device:
            raise TypeError(
                f"{layer}: data {shape_str(x.shape)} is on {x.device} but {name} is on {t.device}; "
                "move both to the same device"
            )


class _MaskedBatchNorm(nn.modules.batchnorm._BatchNorm):
    _dims: tuple[int, ...] = ()
    _names = ""

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        layer = type(self).__name__
        x = as_masked(layer, x)
        _check_dims(layer, x.data, self._dims, self._names)
        _check_device(layer, x.data, self)
        _check_channels_and_dtype(layer, x.data, self.num_features, self.weight)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return masked_batch_norm(
            x.data,
            x.mask,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )


class MaskedBatchNorm1d(_MaskedBatchNorm, nn.BatchNorm1d):
    """Batch normalization of ``(N, C)`` or ``(N, C, L)`` over valid elements (as ``nn.BatchNorm1d``).

    Running statistics are updated from valid values only (see
    [`masknn.functional.masked_batch_norm`][]); ``momentum=None``, eval mode and
    ``track_running_stats`` behave as in torch.

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
    running variance, ``num_batches_tracked`` and eval-mode behaviour. A
    ``nn.BatchNorm2d`` ``state_dict`` loads unchanged.

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

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        layer = type(self).__name__
        x = as_masked(layer, x)
        _check_dims(layer, x.data, self._dims, self._names)
        _check_device(layer, x.data, self)
        if (
            self.num_features
            and x.data.shape[1] != self.num_features
            and (self.affine or self.track_running_stats)
        ):
            raise ValueError(
                f"{layer}: expected {self.num_features} channels, got data shape {shape_str(x.data.shape)}"
            )
        use_input_stats = self.training or not self.track_running_stats
        return masked_instance_norm(
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

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked("MaskedGroupNorm", x)
        _check_device("MaskedGroupNorm", x.data, self)
        if x.data.dim() < 2 or x.data.shape[1] != self.num_channels:
            raise ValueError(
                f"MaskedGroupNorm: expected data (N, {self.num_channels}, ...), "
                f"got shape {shape_str(x.data.shape)}"
            )
        return masked_group_norm(x.data, x.mask, self.num_groups, self.weight, self.bias, self.eps)


class MaskedLayerNorm(nn.LayerNorm):
    """Layer normalization over the valid elements of the last dimensions (as ``torch.nn.LayerNorm``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 5, 8), torch.rand(2, 5, 8) > 0.3)
        >>> MaskedLayerNorm(8)(x).data.shape
        torch.Size([2, 5, 8])
    """

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked("MaskedLayerNorm", x)
        _check_device("MaskedLayerNorm", x.data, self)
        return masked_layer_norm(x.data, x.mask, self.normalized_shape, self.weight, self.bias, self.eps)
