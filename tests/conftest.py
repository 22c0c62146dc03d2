from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: ../shared/reference beside the project root (absent on some machines).
REFERENCE = Path(os.environ.get("MASKNN_REFERENCE", ROOT.parent / "shared" / "reference"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--compat-table",
        metavar="PATH",
        default=None,
        help="write the compatibility suite's results (tests/compat) as a markdown table to PATH",
    )


def reference_dir(name: str) -> Path:
    """The reference folder ``name``, or skip the test with a message when it is absent."""
    path = REFERENCE / name
    if not path.is_dir() or not any(path.glob("*.npz")):
        pytest.skip(f"reference vectors not found at {path} (../shared/reference is absent here)")
    return path
