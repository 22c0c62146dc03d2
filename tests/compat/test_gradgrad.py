"""Compatibility cells, capability ``gradgrad``: Double backward: torch.autograd.gradgradcheck in float64."""

from __future__ import annotations

import pytest

from tests.compat.cells import run_cell
from tests.compat.harness import CompatInfo
from tests.compat.table import IDS, ROWS

pytestmark = [pytest.mark.compat, pytest.mark.gradgrad]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_gradgrad(row: CompatInfo, request: pytest.FixtureRequest) -> None:
    run_cell(row, "gradgrad", request)
