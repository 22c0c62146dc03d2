"""Compatibility cells, capability ``channels_last``.

channels_last input keeps channels_last output where the plain twin does, with equal values.
"""

from __future__ import annotations

import pytest

from tests.compat.cells import run_cell
from tests.compat.harness import CompatInfo
from tests.compat.table import IDS, ROWS

pytestmark = [pytest.mark.compat, pytest.mark.channels_last]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_channels_last(row: CompatInfo, request: pytest.FixtureRequest) -> None:
    run_cell(row, "channels_last", request)
