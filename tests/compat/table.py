"""The compatibility table: every row, collected from the ``rows_*.py`` files of this package.

Each area adds a file ``rows_<area>.py`` defining ``ROWS: list[CompatInfo]``;
:func:`all_rows` collects them in file order (call and twin helpers: ``calls.py``).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from tests.compat.harness import CompatInfo


def all_rows() -> list[CompatInfo]:
    rows: list[CompatInfo] = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name.startswith("rows_"):
            rows.extend(importlib.import_module(f"tests.compat.{info.name}").ROWS)
    return rows


ROWS = all_rows()
IDS = [r.id for r in ROWS]
