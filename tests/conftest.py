from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# --- Hypothesis profiles (tests/README.md) --------------------------------------------------
# "ci" (selected by scripts/check.sh): the same examples on every run (derandomize: each
# property test draws from a seed derived from its own name and source) and no example
# database, so a check can only fail on an example that every other run of the same tree
# sees too. "default" (a plain `pytest`): hypothesis explores new random examples on each
# run and replays the failures it saved in .hypothesis/. Each test keeps its own
# max_examples (in its @settings); a profile changes only how the examples are drawn. "ci"
# also turns off what depends on the machine's speed (the per-example deadline and the
# too_slow health check), so that a loaded CI machine cannot fail a run that a quiet one passes.
# Select one with HYPOTHESIS_PROFILE=<name> or pytest's --hypothesis-profile=<name>.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
# ---------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Reference vectors computed by peer implementations (tests/data/README.md), shipped in the repository.
REFERENCE = ROOT / "tests" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--compat-table",
        metavar="PATH",
        default=None,
        help="write the compatibility suite's results (tests/compat) as a markdown table to PATH",
    )


def reference_dir(name: str) -> Path:
    """The reference folder ``name`` under ``tests/data``; the test fails (never skips) when it
    is absent or empty: the vectors are part of the repository."""
    path = REFERENCE / name
    if not path.is_dir() or not any(path.glob("*.npz")):
        pytest.fail(
            f"reference vectors missing: {path} holds no .npz file; they are part of the repository "
            "(tests/data/README.md), restore them with git checkout -- tests/data"
        )
    return path


# ---- The compatibility table (tests/compat): this block's hooks only. They live here, not in
# tests/compat/conftest.py: under pytest-xdist the controller, which receives every worker's
# reports, loads the conftest files of its arguments' folders only (``pytest -n 2`` from the
# root never loads tests/compat/conftest.py there), and only the controller sees every cell.
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _COMPAT_TABLE:
        return
    from tests.compat import results

    results.record(report)


def pytest_sessionstart(session: pytest.Session) -> None:
    # An xdist worker sees only its own cells: the controller writes the table. (A session
    # hook, not pytest_configure: a second pytest_configure in this file would replace it.)
    config = session.config
    path = config.getoption("compat_table", None)
    _COMPAT_TABLE.clear()
    if path and not hasattr(config, "workerinput"):
        _COMPAT_TABLE.append(path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _COMPAT_TABLE:
        return
    from tests.compat import results

    if results.RESULTS:
        Path(_COMPAT_TABLE[0]).write_text(results.markdown(results.RESULTS), encoding="utf-8")
        print(f"\ncompatibility table written to {_COMPAT_TABLE[0]}")


#: The path of ``--compat-table`` in the process that writes it (empty elsewhere).
_COMPAT_TABLE: list[str] = []
# ---- end of the compatibility table's block
