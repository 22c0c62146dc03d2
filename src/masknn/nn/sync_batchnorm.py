"""Masked batch normalization with statistics synchronized across ``torch.distributed`` processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import shape_str
from masknn.functional.normalization import batch_norm
from masknn.functional.sync_batch_norm import _check_process_group, sync_batch_norm
from masknn.nn._checks import check_device, construct
from masknn.nn.normalization import MaskedBatchNorm1d, MaskedBatchNorm2d, MaskedBatchNorm3d, check_norm_args

__all__ = ["MaskedSyncBatchNorm"]

_LAYER = "MaskedSyncBatchNorm"

#: ``hook(module, process_group)``: synchronizes the batch norms of ``module`` in place and
#: returns True when ``module`` is a model that ``masknn.convert`` produced (registered by
#: that package, a layer above this one, which this module does not import).
_CONVERTED_MODELS: list[Callable[[nn.Module, Any], bool]] = []


class MaskedSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalization over the valid elements of the global batch of every process
    (as ``torch.nn.SyncBatchNorm``, for data with a mask).

    In training, each channel's mean and variance are taken over the valid elements of
    the union of the batches of all processes in ``process_group`` (default: the whole
    world), so every rank normalizes with the same statistics and updates its running
    statistics identically; the gradient through those statistics is all-reduced in
    backward (see [`masknn.functional.masked_sync_batch_norm`][]). A channel with no
    valid element on any rank keeps its running statistics; a rank whose batch has no
    valid element still takes part. ``num_batches_tracked`` counts the global batches
    that hold a valid element on some rank, and ``momentum=None`` averages over those,
    as in ``MaskedBatchNorm2d``.

    In eval mode it uses the running statistics and communicates nothing. Without an
    initialized process group (or with a group of one process) it is
    [`MaskedBatchNorm2d`][masknn.nn.MaskedBatchNorm2d] (any number of dimensions ``(N, C, *)``, like
    ``nn.SyncBatchNorm``). Works with any ``torch.distributed`` backend, gloo on CPU
    included (torch's own ``SyncBatchNorm`` refuses CPU tensors).

    Convert a model's ``MaskedBatchNorm1d/2d/3d`` with
    [`convert_sync_batchnorm`][masknn.nn.MaskedSyncBatchNorm.convert_sync_batchnorm],
    **not** ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``: torch's converter turns
    them (they are ``_BatchNorm`` subclasses) into unmasked ``nn.SyncBatchNorm``
    layers, which refuse a ``Masked`` with an error pointing here.

    It is not an ``nn.SyncBatchNorm`` subclass on purpose: ``DistributedDataParallel``
    refuses CPU models that hold one. ``state_dict`` keys are those of the batch-norm
    layers, so checkpoints load both ways.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> bn = MaskedSyncBatchNorm(3)  # no process group here: a MaskedBatchNorm
        >>> out = bn(Masked(torch.randn(4, 3, 5, 5), torch.rand(4, 1, 5, 5) > 0.3))
        >>> out.data.shape, bn.num_batches_tracked.item()
        (torch.Size([4, 3, 5, 5]), 1)
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_norm_args(_LAYER, num_features, eps, momentum)
        _check_process_group(_LAYER, process_group)
        construct(
            _LAYER, super().__init__, num_features, eps, momentum, affine, track_running_stats, device, dtype
        )
        self.process_group = process_group

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked(_LAYER, x)
        data = x.data
        if data.dim() < 2 or data.shape[1] != self.num_features:
            raise ValueError(
                f"{_LAYER}: expected data (N, {self.num_features}, *) with {self.num_features} channels "
                f"(num_features), got shape {shape_str(data.shape)}"
            )
        check_device(_LAYER, data, self)
        if not data.is_floating_point():
            raise TypeError(f"{_LAYER}: expected floating point data, got dtype {data.dtype}")
        w = self.weight
        if w is not None and data.dtype != w.dtype and data.dtype not in (torch.float16, torch.bfloat16):
            raise TypeError(
                f"{_LAYER}: data {shape_str(data.shape)} is {data.dtype} but the parameters are {w.dtype}; "
                "convert one of them"
            )
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        running_mean = self.running_mean if track else None
        running_var = self.running_var if track else None
        # Counted (and, with momentum=None, averaged over) only batches with a valid element
        # on some rank.
        counter = self.num_batches_tracked if self.training and self.track_running_stats else None
        if use_batch and self.training:  # as torch: statistics are synchronized in training only
            return sync_batch_norm(
                _LAYER, data, x.mask, running_mean, running_var, self.weight, self.bias, self.momentum,
                self.eps, self.process_group, counter,
            )  # fmt: skip
        return batch_norm(
            _LAYER, data, x.mask, running_mean, running_var, self.weight, self.bias, use_batch, self.momentum,
            self.eps,
        )  # fmt: skip

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group: Any = None) -> nn.Module:
        """Replace every ``MaskedBatchNorm1d/2d/3d`` in ``module`` by a ``MaskedSyncBatchNorm``.

        Mirrors ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``: the new layers take
        over the very parameter and buffer tensors (an optimizer built before still
        updates them; ``state_dict`` keys are unchanged, so checkpoints load into the
        converted model and back), the configuration (``eps``, ``momentum``, ``affine``,
        ``track_running_stats``) and the train/eval mode. Returns ``module`` converted in
        place, or a new layer when ``module`` itself is a masked batch norm. Plain
        ``nn.BatchNorm*d`` layers outside converted models are left as they are (they take
        plain tensors; convert them with torch's converter on their own submodules if needed).

        A model returned by [`masknn.convert`][masknn.convert.convert] (``module`` itself, or
        held anywhere inside it) has plain batch norms that take masked data: each of them
        (``nn.BatchNorm1d/2d/3d``, ``nn.SyncBatchNorm``, subclasses whose forward calls
        ``F.batch_norm`` such as timm's ``BatchNormAct2d``) keeps its class, code, parameters
        and buffers and is synchronized in place over ``process_group``: in training mode
        its statistics are those of the valid positions of every rank's batch.

        Examples:
            >>> import torch
            >>> from masknn import nn as mnn
            >>> model = torch.nn.Sequential(mnn.PartialConv2d(1, 4, 3), mnn.MaskedBatchNorm2d(4))
            >>> model = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(model)
            >>> type(model[1]).__name__
            'MaskedSyncBatchNorm'
        """
        if any(sync(module, process_group) for sync in _CONVERTED_MODELS):
            return module  # a model converted by masknn.convert: synchronized in place
        out = module
        if isinstance(module, (MaskedBatchNorm1d, MaskedBatchNorm2d, MaskedBatchNorm3d)):
            ref = module.weight if module.weight is not None else module.running_mean
            out = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
                device=None if ref is None else ref.device,
                dtype=None if ref is None else ref.dtype,
            )
            if module.affine:
                with torch.no_grad():
                    out.weight = module.weight
                    out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.train(module.training)
            if hasattr(module, "qconfig"):
                out.qconfig = module.qconfig
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out

    def extra_repr(self) -> str:
        world = "" if self.process_group is None else f", process_group={self.process_group!r}"
        return super().extra_repr() + world
