"""Fixtures of the masknn.convert tests.

* torchvision (and timm, segmentation_models_pytorch, which import it) import beside
  the CPU torch thanks to :mod:`tests.convert._torchvision_shim`, installed here before
  any test module imports them;
* every test runs against the partial-convolution semantics the converter is built on
  (``padding_valid=True``: padding counts in the window, never validates an output),
  emulated by :mod:`tests.convert._padding` where the installed masknn lacks it; tests
  marked ``real_padding`` see the installed masknn as it is;
* one thread (tiny inputs: OpenMP start-up costs more than it saves on shared cores).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.convert import _padding, _torchvision_shim

_torchvision_shim.install()


@pytest.fixture(autouse=True)
def padding_semantics(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Yields True when the semantics are emulated for this test."""
    if request.node.get_closest_marker("real_padding") is not None:
        yield False
        return
    with _padding.emulate(monkeypatch) as emulated:
        yield emulated


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
