"""Per-model conversion options, visible to the rules while a converted model runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Options", "current", "using"]

LINEAR_MODES = ("zero", "partial")


@dataclass(frozen=True)
class Options:
    """How [`masknn.convert.convert`][] maps the ops that have a choice.

    Attributes:
        linear_mode: ``masked_linear``'s mode for ``F.linear``: ``"zero"`` (masked
            features count as 0, the plain layer's result on zero-filled input) or
            ``"partial"`` (rescaled by ``in_features / valid count``).

    Examples:
        >>> from masknn.convert import Options
        >>> Options(linear_mode="partial")
        Options(linear_mode='partial')
    """

    linear_mode: str = "zero"

    def __post_init__(self) -> None:
        if self.linear_mode not in LINEAR_MODES:
            raise ValueError(
                f"masknn.convert: linear_mode must be one of {LINEAR_MODES}, got {self.linear_mode!r}"
            )


# A plain stack, not a ContextVar: torch.compile traces list pushes and pops (it breaks the
# graph on ContextVar.get). Converted models running in several Python threads at once
# with different options would see each other's; every model with the defaults is safe.
_STACK: list[Options] = [Options()]


def current() -> Options:
    """The options of the converted model now running (the defaults outside one)."""
    return _STACK[-1]


@contextmanager
def using(options: Options) -> Iterator[None]:
    """Run a block with ``options`` in force."""
    _STACK.append(options)
    try:
        yield
    finally:
        _STACK.pop()
