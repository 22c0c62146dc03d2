"""Locate data files inside installed packages without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["package_file"]


def package_file(package: str, relative: str, extra: str = "demo") -> Path:
    """Path of ``relative`` inside the installed ``package`` (not imported).

    Raises:
        ImportError: the package is not installed (names the extra that installs it).
        FileNotFoundError: the package is installed but does not ship the file.

    Examples:
        >>> package_file("masknn", "py.typed").name
        'py.typed'
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"masknn.datasets: package {package!r} is not installed; "
            f"install it with: pip install 'masknn[{extra}]'"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.is_file():
            return path
    raise FileNotFoundError(f"masknn.datasets: {package!r} is installed but has no file {relative!r}")
