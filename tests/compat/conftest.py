"""Records each compatibility cell's outcome; ``--compat-table PATH`` writes the markdown table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat import results


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    cell = results.parse_nodeid(report.nodeid)
    if cell is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    if report.passed:
        na = dict(report.user_properties).get("compat_na")
        results.RESULTS[cell] = ("n/a", str(na)) if na is not None else ("pass", "")
    elif report.skipped:
        results.RESULTS[cell] = ("skipped", results.message(report))
    else:
        results.RESULTS[cell] = ("FAIL", results.message(report))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("compat_table", None)
    if path and results.RESULTS:
        Path(path).write_text(results.markdown(results.RESULTS), encoding="utf-8")
        print(f"\ncompatibility table written to {path}")
