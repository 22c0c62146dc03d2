"""Compatibility cells, capability ``autocast``.

Output dtypes under torch.autocast('cpu', dtype=torch.bfloat16) equal the plain twin's.
"""

from __future__ import annotations

import pytest

from tests.compat.cells import run_cell
from tests.compat.harness import CompatInfo
from tests.compat.table import IDS, ROWS

pytestmark = [pytest.mark.compat, pytest.mark.autocast]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_autocast(row: CompatInfo, request: pytest.FixtureRequest) -> None:
    run_cell(row, "autocast", request)
