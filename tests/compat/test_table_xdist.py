"""``--compat-table`` writes the cells of a run, also under pytest-xdist (``-n 2``): the workers
run the cells, the controller receives their reports and writes the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat.table import IDS

pytestmark = pytest.mark.compat

ROOT = Path(__file__).resolve().parents[2]


def _row(table: str, row: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {row} |"))
    return [c.strip() for c in line.strip().strip("|").split("|")][2:]


def test_compat_table_is_written_by_the_controller(tmp_path: Path) -> None:
    """Under ``-n 2`` (one run: about 15 s of start-up; without ``-n`` the same hooks run in the
    one process, which is both controller and worker)."""
    pytest.importorskip("xdist", reason="pytest-xdist is in the dev extra")
    out = tmp_path / "table.md"
    # Two cheap cells that pass, and one n/a cell (the twin's evidence is recorded too).
    cells = [
        "tests/compat/test_autocast.py::test_autocast[MaskedAdd]",
        "tests/compat/test_autocast.py::test_autocast[MaskedMul]",
        "tests/compat/test_vmap.py::test_vmap[MaskedEmbedding-max_norm]",
    ]
    # A fresh session: none of the outer run's pytest or xdist variables (this test may run in a worker).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", *cells]
        + ["--compat-table", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3 passed" in run.stdout
    table = out.read_text(encoding="utf-8")
    autocast = 5  # the column of autocast in CAPABILITIES
    assert _row(table, "MaskedAdd")[autocast] == "pass"
    assert _row(table, "MaskedMul")[autocast] == "pass"
    assert _row(table, "MaskedEmbedding-max_norm")[3].startswith("n/a")
    assert _row(table, "MaskedEmbedding-max_norm")[autocast] == "not run"
    assert all(f"| {row} |" in table for row in IDS)
