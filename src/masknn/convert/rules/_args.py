"""Argument binding for the rules: torch functions take the same argument by position or name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from masknn.convert._carrier import unsupported

__all__ = ["REQUIRED", "bind"]

REQUIRED = object()


def bind(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], names: Sequence[str], defaults: Sequence[Any]
) -> list[Any]:
    """The values of ``names`` (in order) from ``args``/``kwargs``, ``defaults`` for the rest.

    ``defaults`` has one entry per name (``REQUIRED`` for required ones). An unknown
    keyword or a missing required argument raises the conversion error for ``func``.
    """
    if len(args) > len(names):
        raise unsupported(
            func, f"called with {len(args)} positional arguments, expected at most {len(names)}"
        )
    values = list(args) + [REQUIRED] * (len(names) - len(args))
    for key, value in kwargs.items():
        if key == "self":
            key = names[0]
        try:
            values[names.index(key)] = value
        except ValueError:
            raise unsupported(
                func, f"the argument {key}={value!r} is not supported by its masked rule"
            ) from None
    for i, v in enumerate(values):
        if v is REQUIRED:
            if defaults[i] is REQUIRED:
                raise unsupported(func, f"the required argument {names[i]!r} is missing")
            values[i] = defaults[i]
    return values
