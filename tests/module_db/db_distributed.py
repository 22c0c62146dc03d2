"""Contract rows for the distributed Modules. In the test process no process group is initialized,
so MaskedSyncBatchNorm behaves as MaskedBatchNorm (its multi-process behaviour, and its contract
across ranks, are checked in tests/nn/test_sync_batchnorm.py)."""

from __future__ import annotations

import torch

from masknn import Masked
from masknn import nn as mnn
from tests.module_db import ModuleInfo


def _img(per_channel: bool) -> tuple[Masked]:
    return (Masked(torch.randn(3, 4, 5, 6), torch.rand(3, 4 if per_channel else 1, 5, 6) > 0.4),)


ENTRIES = [
    ModuleInfo(
        mnn.MaskedSyncBatchNorm,
        lambda: mnn.MaskedSyncBatchNorm(4),
        lambda: _img(False),
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
    ModuleInfo(
        mnn.MaskedSyncBatchNorm,
        lambda: mnn.MaskedSyncBatchNorm(4, momentum=None),
        lambda: _img(True),
        id="MaskedSyncBatchNorm-pc-cma",
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
    ModuleInfo(
        mnn.MaskedSyncBatchNorm,
        lambda: mnn.MaskedSyncBatchNorm(6),
        lambda: (Masked(torch.randn(5, 6), torch.rand(5, 6) > 0.4),),
        id="MaskedSyncBatchNorm-2d-data",
        options={"rtol": 1e-5, "atol": 1e-6},
    ),
]
