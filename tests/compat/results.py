"""The outcome of each cell in a pytest session, and the markdown table made from them."""

from __future__ import annotations

import re
from typing import Any

import torch

from tests.compat.cells import na_reason
from tests.compat.harness import CAPABILITIES, CompatInfo
from tests.compat.table import ROWS

#: (row id, capability) -> (status, detail); status is "pass", "n/a", "FAIL" or "skipped".
RESULTS: dict[tuple[str, str], tuple[str, str]] = {}

_NODE = re.compile(r"tests/compat/test_(\w+)\.py::test_\w+\[(.+)\]$")
_MARK = {"pass": "pass", "n/a": "n/a", "FAIL": "**FAIL**", "skipped": "skipped"}


def parse_nodeid(nodeid: str) -> tuple[str, str] | None:
    """``tests/compat/test_onnx.py::test_onnx[PartialConv2d]`` -> ("PartialConv2d", "onnx")."""
    match = _NODE.search(nodeid)
    if match is None or match.group(1) not in CAPABILITIES:
        return None
    return match.group(2), match.group(1)


def record(report: Any) -> None:
    """Records the outcome of a compatibility cell's test report in :data:`RESULTS` (any other
    report is ignored): the call phase, or a setup that did not pass."""
    cell = parse_nodeid(report.nodeid)
    if cell is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    if report.passed:
        na = dict(report.user_properties).get("compat_na")
        RESULTS[cell] = ("n/a", str(na)) if na is not None else ("pass", "")
    elif report.skipped:
        RESULTS[cell] = ("skipped", message(report))
    else:
        RESULTS[cell] = ("FAIL", message(report))


def message(report: Any) -> str:
    """The first line of a failure or skip, without pytest's decorations."""
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        text = str(report.longrepr[2])
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:400]
    return ""


def _name(obj: Any) -> str:
    return f"`{obj.__name__}`"


def _label(row: CompatInfo, capability: str, status: str) -> str:
    mark = _MARK[status]
    if status == "pass" and capability == "compile":
        mark += f" ({', '.join([row.backend, *row.dynamo_config])})"
    if status == "pass" and capability == "export":
        mark += " (strict)" if row.export_strict else " (non-strict)"
    return mark


def markdown(results: dict[tuple[str, str], tuple[str, str]]) -> str:
    """The table of every row and capability ("not run" for cells this session did not run)."""
    counts: dict[str, int] = {}
    lines = [
        "# Compatibility table",
        "",
        "<!-- Generated: `pytest tests/compat --compat-table docs/guide/compatibility.md`. "
        "Do not edit by hand. -->",
        "",
        f"Every public masknn op through every capability, as run by `tests/compat` with torch "
        f"{torch.__version__}. A row names the public Module and the functional op it runs (a Module "
        "row runs the functional op its forward calls). What each capability checks, and how to "
        "run one cell or one column, is in [Compile, export and deploy](compile-export-deploy.md).",
        "",
        "*n/a* marks a cell where PyTorch's own twin cannot do the same; the cell's test runs the "
        "twin through the same check and passes only if the twin fails it, so an n/a cannot go stale. "
        "The reasons are listed under the table.",
        "",
        "| row | covers | " + " | ".join(CAPABILITIES) + " |",
        "|---|---|" + "---|" * len(CAPABILITIES),
    ]
    reasons: dict[str, int] = {}
    failures: list[str] = []
    for row in ROWS:
        cells = []
        for cap in CAPABILITIES:
            status, detail = results.get((row.id, cap), ("not run", ""))
            counts[status] = counts.get(status, 0) + 1
            if status == "not run":
                cells.append("not run")
                continue
            label = _label(row, cap, status)
            reason = None
            if status == "n/a":
                reason = na_reason(row, cap) or detail
            elif cap == "compile" and row.fullgraph_na is not None:
                reason = row.fullgraph_na.reason
            if reason is not None:
                label += f" [{reasons.setdefault(reason, len(reasons) + 1)}]"
            if status in ("FAIL", "skipped"):
                failures.append(f"| {row.id} | {cap} | {detail.replace('|', '/')} |")
            cells.append(label)
        covers = ", ".join(_name(c) for c in row.covers)
        lines.append(f"| {row.id} | {covers} | " + " | ".join(cells) + " |")
    lines += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ".", ""]
    if reasons:
        lines += ["## Notes: why a cell is n/a, or compiled with graph breaks", ""]
        lines += [f"{n}. {reason}" for reason, n in reasons.items()]
        lines.append("")
    if failures:
        lines += ["## Failing cells", "", "| row | capability | error |", "|---|---|---|", *failures, ""]
    return "\n".join(lines)
