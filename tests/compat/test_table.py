"""The compatibility table itself: every public name has a row, rows run what they claim to
cover, and the committed markdown table has the table's rows and n/a cells."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest
import torch
from torch import nn

import masknn.functional
import masknn.nn
from tests.compat.cells import na_reason
from tests.compat.harness import CAPABILITIES, CompatInfo, build, make_inputs
from tests.compat.table import IDS, ROWS

pytestmark = pytest.mark.compat

TABLE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "compatibility.md"


def _public() -> dict[str, Any]:
    names: dict[str, Any] = {}
    for name in masknn.nn.__all__:
        obj = getattr(masknn.nn, name)
        if inspect.isclass(obj) and issubclass(obj, nn.Module):
            names[f"masknn.nn.{name}"] = obj
    for name in masknn.functional.__all__:
        obj = getattr(masknn.functional, name)
        if inspect.isfunction(obj):
            names[f"masknn.functional.{name}"] = obj
    return names


def test_every_public_module_and_function_has_a_row() -> None:
    covered = {id(c) for row in ROWS for c in row.covers}
    missing = sorted(name for name, obj in _public().items() if id(obj) not in covered)
    assert not missing, f"public names with no row in tests/compat/rows_*.py: {missing}"


def test_row_ids_are_unique() -> None:
    assert len(IDS) == len(set(IDS)), sorted({i for i in IDS if IDS.count(i) > 1})


def test_na_cells_name_a_capability() -> None:
    for row in ROWS:
        unknown = set(row.na) - set(CAPABILITIES)
        assert not unknown, f"{row.id}: n/a for unknown capabilities {unknown}"
        assert "channels_last" not in row.na, f"{row.id}: channels_last n/a is decided from the twin"


def _called_code(row: CompatInfo) -> set[CodeType]:
    seen: set[CodeType] = set()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            seen.add(frame.f_code)

    op = build(row)
    inputs = make_inputs(row)
    sys.setprofile(profile)
    try:
        op(*inputs)
    finally:
        sys.setprofile(None)
    return seen


def _delegate(function: Any) -> CodeType | None:
    """The code of the masknn function that ``function`` ends by returning the call of
    (``return _partial_conv("partial_conv2d", ...)``), or None.

    A public op that is such a thin wrapper counts as run when its delegate runs: the
    Modules call the delegate directly, with their own name for the errors."""
    body = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    assert isinstance(body, ast.FunctionDef)
    last = body.body[-1]
    if not (isinstance(last, ast.Return) and isinstance(last.value, ast.Call)):
        return None
    callee = last.value.func
    target = function.__globals__.get(callee.id) if isinstance(callee, ast.Name) else None
    if inspect.isfunction(target) and target.__module__.startswith("masknn."):
        return target.__code__
    return None


def test_delegates_are_found() -> None:
    """The wrapper rule of :func:`_delegate` sees the wrappers it is for (and only them)."""
    from masknn.functional import conv

    assert _delegate(masknn.functional.partial_conv2d) is conv._partial_conv.__code__
    assert _delegate(masknn.functional.masked_sum) is None  # returns a Masked it builds


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_row_runs_what_it_covers(row: CompatInfo) -> None:
    """A Module row builds that Module; every function it covers is called when it runs
    (or, for a thin wrapper, the op it returns the call of: see :func:`_delegate`)."""
    layer = build(row).layer
    classes = [c for c in row.covers if inspect.isclass(c) and issubclass(c, nn.Module)]
    for cls in classes:
        assert isinstance(layer, cls), f"{row.id} covers {cls.__name__} but builds {type(layer).__name__}"
    functions = [c for c in row.covers if inspect.isfunction(c)]
    if functions:
        called = _called_code(row)
        missed = [f.__name__ for f in functions if f.__code__ not in called and _delegate(f) not in called]
        assert not missed, f"{row.id} covers {missed}, which its run never calls: give them a row"


def _committed() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2 + len(CAPABILITIES) and cells[0] not in ("row", "---"):
            rows[cells[0]] = cells[2:]
    return rows


def test_committed_table_has_every_row_and_its_na_cells() -> None:
    """docs/guide/compatibility.md is regenerated when rows or n/a cells change:
    ``pytest tests/compat --compat-table docs/guide/compatibility.md``."""
    committed = _committed()
    assert list(committed) == IDS, "the committed table's rows differ from the table: regenerate it"
    torch.manual_seed(0)
    for row in ROWS:
        for cap, cell in zip(CAPABILITIES, committed[row.id]):
            expected_na = na_reason(row, cap) is not None
            assert cell != "not run", f"{row.id} / {cap}: not run in the committed table: regenerate it"
            assert re.match(r"n/a\b", cell) is not None or not expected_na, (
                f"{row.id} / {cap}: n/a in the table, the committed file says {cell!r}: regenerate it"
            )
            assert not cell.startswith("n/a") or expected_na, (
                f"{row.id} / {cap}: the committed file says n/a, the table does not: regenerate it"
            )
