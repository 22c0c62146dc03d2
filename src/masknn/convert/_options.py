"""Per-model conversion options, visible to the rules while a converted model runs."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Options", "current", "using"]

LINEAR_MODES = ("zero", "partial")


@dataclass(frozen=True)
class Options:
    """How :func:`masknn.convert.convert` maps the ops that have a choice.

    Attributes:
        linear_mode: ``masked_linear``'s mode for ``F.linear``: ``"zero"`` (masked
            features count as 0, the plain layer's result on zero-filled input) or
            ``"partial"`` (rescaled by ``in_features / valid count``).
    """

    linear_mode: str = "zero"

    def __post_init__(self) -> None:
        if self.linear_mode not in LINEAR_MODES:
            raise ValueError(
                f"masknn.convert: linear_mode must be one of {LINEAR_MODES}, got {self.linear_mode!r}"
            )


_DEFAULT = Options()
_CURRENT: contextvars.ContextVar[Options] = contextvars.ContextVar("masknn_convert_options")


def current() -> Options:
    """The options of the converted model now running (the defaults outside one)."""
    return _CURRENT.get(_DEFAULT)


@contextmanager
def using(options: Options) -> Iterator[None]:
    """Run a block with ``options`` in force."""
    token = _CURRENT.set(options)
    try:
        yield
    finally:
        _CURRENT.reset(token)
