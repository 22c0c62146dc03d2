"""Packaging metadata: the license in the current SPDX form (setuptools >= 77 warns about the
table form ``{ text = "MIT" }`` at every build)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT


def _pyproject() -> dict:  # type: ignore[type-arg]
    if sys.version_info < (3, 11):
        pytest.skip("reading pyproject.toml needs tomllib (Python >= 3.11)")
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression() -> None:
    config = _pyproject()
    assert config["project"]["license"] == "MIT"
    # The string form needs setuptools >= 77 (older versions reject it).
    requires = config["build-system"]["requires"]
    assert "setuptools>=77" in requires
    assert not any(c.startswith("License ::") for c in config["project"].get("classifiers", []))
