"""The CNN examples run (few steps) and learn something."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread() -> Iterator[None]:
    # Small tensors on shared cores: one thread avoids OpenMP oversubscription stalls.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_masked_cnn_classifier_learns(one_thread: None) -> None:
    acc = _load("masked_cnn_classifier").main(steps=30)
    assert acc > 0.8


def test_partial_conv_unet_beats_mean_fill(one_thread: None) -> None:
    err, base = _load("partial_conv_unet").main(steps=15)
    assert err < base
