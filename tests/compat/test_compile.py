"""Compatibility cells, capability ``compile``.

torch.compile(dynamic=True, fullgraph=True): three shapes equal eager, a new mask compiles nothing new.
"""

from __future__ import annotations

import pytest

from tests.compat.cells import run_cell
from tests.compat.harness import CompatInfo
from tests.compat.table import IDS, ROWS

pytestmark = [pytest.mark.compat, pytest.mark.compile]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_compile(row: CompatInfo, request: pytest.FixtureRequest) -> None:
    run_cell(row, "compile", request)
