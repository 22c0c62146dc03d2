"""Normalization rules: ``F.batch_norm``, ``F.instance_norm``, ``F.group_norm``, ``F.layer_norm``.

Each runs masknn's masked twin (statistics over valid positions only, running statistics
updated from valid values only, DESIGN section 4) with the same arguments. Because the
functional call is intercepted, a norm called inside another module's forward (timm's
fused ``BatchNormAct2d`` calls ``F.batch_norm`` directly; torchvision's ConvNeXt applies
``F.layer_norm`` over channels after a permute) is converted like ``nn.BatchNorm2d``.

``F.batch_norm`` called by a synchronized batch norm in training mode (``masknn.convert._sync``:
a ``torch.nn.SyncBatchNorm``, or any batch norm after
[`MaskedSyncBatchNorm.convert_sync_batchnorm`][masknn.nn.MaskedSyncBatchNorm.convert_sync_batchnorm])
takes its statistics over the valid positions of every rank's batch:
[`masknn.functional.masked_sync_batch_norm`][] with the same arguments.
"""

from __future__ import annotations

from typing import Any

import masknn.functional.normalization as mnorm
from masknn.convert import _sync, _table
from masknn.convert._carrier import carry
from masknn.convert.rules._args import REQUIRED, bind
from masknn.convert.rules._common import one_data
from masknn.functional.sync_batch_norm import masked_sync_batch_norm

__all__: list[str] = []


def _batch_norm(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x, rm, rv, w, b, training, momentum, eps = bind(
        func,
        args,
        kwargs,
        ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
        (REQUIRED, REQUIRED, REQUIRED, None, None, False, 0.1, 1e-5),
    )
    data, mask = one_data(func, x, (rm, rv, w, b))
    synced, group = _sync.sync_group(bool(training))
    if synced:
        out = masked_sync_batch_norm(data, mask, rm, rv, w, b, float(momentum or 0.0), eps, group)
    else:
        out = mnorm.masked_batch_norm(data, mask, rm, rv, w, b, bool(training), float(momentum or 0.0), eps)
    return carry(out.data, out.mask)


def _instance_norm(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x, rm, rv, w, b, use_input_stats, momentum, eps = bind(
        func,
        args,
        kwargs,
        ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum", "eps"),
        (REQUIRED, None, None, None, None, True, 0.1, 1e-5),
    )
    data, mask = one_data(func, x, (rm, rv, w, b))
    out = mnorm.masked_instance_norm(data, mask, rm, rv, w, b, bool(use_input_stats), float(momentum), eps)
    return carry(out.data, out.mask)


def _group_norm(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x, groups, w, b, eps = bind(
        func,
        args,
        kwargs,
        ("input", "num_groups", "weight", "bias", "eps"),
        (REQUIRED, REQUIRED, None, None, 1e-5),
    )
    data, mask = one_data(func, x, (w, b))
    out = mnorm.masked_group_norm(data, mask, int(groups), w, b, eps)
    return carry(out.data, out.mask)


def _layer_norm(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x, shape, w, b, eps = bind(
        func,
        args,
        kwargs,
        ("input", "normalized_shape", "weight", "bias", "eps"),
        (REQUIRED, REQUIRED, None, None, 1e-5),
    )
    data, mask = one_data(func, x, (w, b))
    out = mnorm.masked_layer_norm(data, mask, shape, w, b, eps)
    return carry(out.data, out.mask)


_table.add(_table.resolve(["batch_norm"], ["torch.nn.functional"]), _batch_norm)
_table.add(_table.resolve(["instance_norm"], ["torch.nn.functional"]), _instance_norm)
_table.add(_table.resolve(["group_norm"], ["torch.nn.functional"]), _group_norm)
_table.add(_table.resolve(["layer_norm"], ["torch.nn.functional"]), _layer_norm)
