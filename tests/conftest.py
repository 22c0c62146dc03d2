from __future__ import annotations

import sys
from pathlib import Path

import pytest

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
