"""Every op is device-agnostic: the contract table on CUDA, and CUDA equal to the CPU.

Skipped cleanly where no CUDA device is present (CI and the development machine have
none); run on a GPU machine with ``python -m pytest tests/test_cuda.py``. The results
of the last such run are recorded in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn
from masknn.testing import assert_no_leakage
from tests.module_db import Adapter, ModuleInfo, all_entries

if not torch.cuda.is_available():  # one skip for the module, not one per row
    pytest.skip("no CUDA device here: the CUDA tests run on a GPU machine", allow_module_level=True)

ENTRIES = all_entries()
CUDA = torch.device("cuda")


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Masked):
        return Masked(obj.data.to(device), obj.mask.to(device))
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, Masked):
        return [obj.data, obj.mask]
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    return []


def _build(info: ModuleInfo) -> tuple[nn.Module, tuple[Any, ...]]:
    torch.manual_seed(0)
    module = info.make()
    inputs = info.inputs()
    if info.call is not None:
        module = Adapter(module, info.call)
    return module, inputs


@pytest.fixture(autouse=True)
def _exact_float32() -> Any:
    """No TF32: the CPU comparison below is in float32."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _random(module: nn.Module) -> bool:
    """True when the module draws random numbers in training (dropout in any form)."""
    return any(
        isinstance(m, nn.modules.dropout._DropoutNd)
        or (isinstance(getattr(m, "dropout", None), float) and m.dropout)
        for m in module.modules()
    )


@pytest.mark.parametrize("info", ENTRIES, ids=[e.id for e in ENTRIES])
def test_contract_on_cuda(info: ModuleInfo) -> None:
    """The contract on CUDA, to a relative 1e-5: CUDA's atomic-add reductions (convolution and
    up-sampling backward) sum in a run-dependent order, so two runs that differ only in the
    masked values agree to float rounding, not bit for bit (seen on an H200: 3e-7 relative)."""
    module, inputs = _build(info)
    options = {"rtol": 1e-5, "atol": 1e-6, **info.options}
    assert_no_leakage(module.to(CUDA), *_to(inputs, CUDA), **options)


@pytest.mark.parametrize("info", ENTRIES, ids=[e.id for e in ENTRIES])
def test_cuda_equals_cpu(info: ModuleInfo) -> None:
    module, inputs = _build(info)
    gpu = copy.deepcopy(module).to(CUDA)
    for mode in (True, False):
        module.train(mode)
        gpu.train(mode)
        torch.manual_seed(1)  # same dropout draws are not expected across devices: eval compares all
        out_cpu = _tensors(module(*inputs))
        out_gpu = _tensors(gpu(*_to(inputs, CUDA)))
        assert len(out_cpu) == len(out_gpu)
        if mode and _random(module):
            continue  # random draws differ between devices in training
        for a, b in zip(out_cpu, out_gpu):
            assert b.device.type == "cuda"
            if a.is_floating_point():
                tol = 1e-2 if a.dtype in (torch.float16, torch.bfloat16) else 1e-4
                torch.testing.assert_close(b.cpu(), a, rtol=tol, atol=tol)
            else:
                assert torch.equal(b.cpu(), a)


def _masked_cnn() -> nn.Sequential:
    return nn.Sequential(
        mnn.PartialConv2d(3, 8, 3, padding=1),
        mnn.MaskedBatchNorm2d(8),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
        mnn.PartialConv2d(8, 8, 3, padding=1),
        mnn.MaskedGlobalAvgPool(),
    )


def _nan_holed(n: int, h: int) -> Masked:
    m = torch.rand(n, 1, h, h, device=CUDA) > 0.3
    x = torch.randn(n, 3, h, h, device=CUDA)
    return Masked(torch.where(m, x, torch.tensor(float("nan"), device=CUDA)), m)


def test_masked_cnn_autocast_float16_on_cuda() -> None:
    torch.manual_seed(0)
    model = _masked_cnn().to(CUDA)
    x = _nan_holed(4, 16)
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(x)
        first = model[0](x)
        plain = nn.Conv2d(3, 8, 3, padding=1).to(CUDA)(x.data)
    assert first.data.dtype == plain.dtype == torch.float16  # the convolution runs in float16, as nn.Conv2d
    assert bool(torch.isfinite(out.data).all())
    out.data.float().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.compile
def test_masked_cnn_compiles_on_cuda_with_dynamic_shapes() -> None:
    torch.manual_seed(0)
    model = _masked_cnn().to(CUDA)
    compiled = torch.compile(model, dynamic=True)
    for n, h in ((2, 16), (3, 24)):
        x = _nan_holed(n, h)
        ref, got = model(x), compiled(x)
        torch.testing.assert_close(got.data, ref.data, rtol=1e-4, atol=1e-4)
        assert torch.equal(got.mask, ref.mask)
