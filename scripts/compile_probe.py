"""Does a masked CNN compile under this torch (dynamic shapes, CPU and CUDA)? A probe for
torch versions other than the one CI runs (scripts/gpu_check.sh runs it on the GPU
machine): it prints each step's result and, on failure, the traceback, and exits 0.

Usage: PYTHONPATH=src python scripts/compile_probe.py
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import torch
from torch import nn

import masknn.nn as mnn
from masknn import Masked


def cnn() -> nn.Sequential:
    return nn.Sequential(
        mnn.PartialConv2d(3, 8, 3, padding=1),
        mnn.MaskedBatchNorm2d(8),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
        mnn.PartialConv2d(8, 8, 3, padding=1),
        mnn.MaskedGlobalAvgPool(),
    )


def step(name: str, fn: Callable[..., object], *args: object) -> None:
    try:
        print(f"{name}: ok {fn(*args)}")
    except Exception:
        print(f"{name}: FAILED")
        traceback.print_exc()


def rank_check(bn: mnn.MaskedBatchNorm2d, x: Masked) -> object:
    return torch.compile(lambda t: t.dim() in bn._dims, fullgraph=True)(x.data)


def compiled_bn(device: str, dynamic: bool, x: Masked) -> object:
    return torch.compile(mnn.MaskedBatchNorm2d(8).to(device), dynamic=dynamic)(x).data.shape


def compiled_cnn(device: str, dynamic: bool) -> object:
    compiled = torch.compile(cnn().to(device), dynamic=dynamic)
    shapes = []
    for n, h in ((2, 16), (3, 24)):
        x = Masked(torch.randn(n, 3, h, h, device=device), torch.rand(n, 1, h, h, device=device) > 0.3)
        shapes.append(tuple(compiled(x).data.shape))
    return shapes


def main() -> None:
    print("torch", torch.__version__)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        torch.manual_seed(0)
        bn = mnn.MaskedBatchNorm2d(8).to(device)
        x = Masked(torch.randn(2, 8, 16, 16, device=device), torch.rand(2, 1, 16, 16, device=device) > 0.3)
        step(f"{device} the rank check under dynamo", rank_check, bn, x)
        for dynamic in (False, True):
            step(f"{device} MaskedBatchNorm2d dynamic={dynamic}", compiled_bn, device, dynamic, x)
            step(f"{device} masked CNN dynamic={dynamic}", compiled_cnn, device, dynamic)


if __name__ == "__main__":
    main()
