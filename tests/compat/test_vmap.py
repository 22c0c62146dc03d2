"""Compatibility cells, capability ``vmap``.

torch.func.vmap and per-sample gradients (vmap(grad(functional_call))) equal a Python loop.
"""

from __future__ import annotations

import pytest

from tests.compat.cells import run_cell
from tests.compat.harness import CompatInfo
from tests.compat.table import IDS, ROWS

pytestmark = [pytest.mark.compat, pytest.mark.vmap]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_vmap(row: CompatInfo, request: pytest.FixtureRequest) -> None:
    run_cell(row, "vmap", request)
