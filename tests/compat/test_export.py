"""Compatibility cells, capability ``export``.

torch.export (eval mode), saved and loaded, rerun on another mask and data equals eager.
"""

from __future__ import annotations

import pytest

from tests.compat.cells import run_cell
from tests.compat.harness import CompatInfo
from tests.compat.table import IDS, ROWS

pytestmark = [pytest.mark.compat, pytest.mark.export]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_export(row: CompatInfo, request: pytest.FixtureRequest) -> None:
    run_cell(row, "export", request)
