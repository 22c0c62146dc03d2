"""Rows for the synchronized masked batch norm, run in one process without a process group.

The fair twin there is torch's own ``nn.SyncBatchNorm``: without an initialized process group
it synchronizes nothing and runs ``F.batch_norm`` (on any device; it refuses CPU tensors only
once a process group is initialized), exactly as ``MaskedSyncBatchNorm`` runs
``masked_batch_norm`` then. The twin is a real ``nn.SyncBatchNorm`` called on the masknn
layer's parameters and buffers (running statistics updated in place, as the layer's own).
The synchronized path (several processes) is checked by ``tests/test_multiprocess.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import masknn.functional as F
from masknn import nn as mnn
from tests.compat.calls import unary
from tests.compat.harness import NA, CompatInfo
from tests.compat.inputs import image, signal

#: nn.SyncBatchNorm in training updates its running statistics in place: vmap refuses.
VMAP_RUNNING_STATS = NA(
    "nn.SyncBatchNorm in training (one process: F.batch_norm) updates unbatched running statistics "
    "from batched data: vmap refuses it",
    "running_mean",
)


def _sync_twin(layer: nn.Module, x: Tensor, *rest: object) -> Tensor:
    """``nn.SyncBatchNorm`` with the layer's configuration, on its parameters and buffers."""
    twin = nn.SyncBatchNorm(
        layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats, device="meta"
    )
    twin.train(layer.training)
    state = {**dict(layer.named_parameters()), **dict(layer.named_buffers())}
    out: Tensor = torch.func.functional_call(twin, state, (x,))
    return out


def _functional_twin(layer: nn.Module, x: Tensor, m: Tensor) -> Tensor:
    """What nn.SyncBatchNorm computes on one process with batch statistics only."""
    return nn.functional.batch_norm(x, None, None, layer.weight, layer.bias, True, 0.1, 1e-5)


ROWS = [
    CompatInfo(
        "MaskedSyncBatchNorm",
        (mnn.MaskedSyncBatchNorm, F.masked_sync_batch_norm),
        lambda: mnn.MaskedSyncBatchNorm(3),
        unary,
        image(),
        _sync_twin,
        na={"vmap": VMAP_RUNNING_STATS},
    ),
    CompatInfo(
        "MaskedSyncBatchNorm-eval-per-channel",
        (mnn.MaskedSyncBatchNorm,),
        lambda: mnn.MaskedSyncBatchNorm(3),
        unary,
        image(per_channel=True),
        _sync_twin,
        train=False,
    ),
    CompatInfo(
        "masked_sync_batch_norm",
        (F.masked_sync_batch_norm,),
        lambda: nn.BatchNorm1d(3),
        lambda layer, x, m: F.masked_sync_batch_norm(x, m, None, None, layer.weight, layer.bias),
        signal(),
        _functional_twin,
    ),
]
