"""Compatibility cells, capability ``onnx``.

torch.onnx.export(dynamo=True) and onnxruntime on another mask and data equal eager (eval mode).
"""

from __future__ import annotations

import pytest

from tests.compat.cells import run_cell
from tests.compat.harness import CompatInfo
from tests.compat.table import IDS, ROWS

pytestmark = [pytest.mark.compat, pytest.mark.onnx]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_onnx(row: CompatInfo, request: pytest.FixtureRequest) -> None:
    run_cell(row, "onnx", request)
