"""The error [`masknn.convert`][masknn.convert.convert] raises, and where in the model it happened."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from torch import nn

__all__ = ["ConversionError", "active_model", "error", "location"]

# The converted models now running, innermost last (a plain list: torch.compile traces it).
_ROOTS: list[nn.Module] = []

# Frames in these folders are library plumbing, not the model's own code.
_TORCH_DIR = os.path.dirname(os.path.dirname(nn.__file__)) + os.sep  # (not torchvision's)
_MASKNN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class ConversionError(ValueError):
    """A converted model met an op or a module that masknn cannot make mask-aware.

    A ``ValueError`` (not a ``TypeError``: Python turns a ``TypeError`` raised by a binary
    operator such as ``x > 0`` into ``NotImplemented`` and would lose this message).

    The message names the op (``torch.nn.functional.grid_sample``, ``Tensor.item``, ...)
    or the module, where it sits in the model (its module path, as in
    ``model.named_modules()``, and its class), the line of the model's code that called
    it, and what to do: use a supported op, or register a conversion with
    [`masknn.convert.register_function`][] / [`masknn.convert.register_module`][].

    Examples:
        >>> import torch
        >>> from masknn.convert import ConversionError, convert
        >>> class Gate(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x if x.sum().item() > 0 else -x   # control flow on data values
        >>> model = convert(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), Gate()))
        >>> try:
        ...     model(torch.ones(1, 1, 2, 2))
        ... except ConversionError as e:
        ...     print(str(e).splitlines()[0])
        masknn.convert: Tensor.item has no masked conversion (in module '1' (Gate))
    """


@contextmanager
def active_model(root: nn.Module) -> Iterator[None]:
    """Within this block errors locate modules relative to ``root`` (a converted model)."""
    _ROOTS.append(root)
    try:
        yield
    finally:
        _ROOTS.pop()


def _is_library(frame: FrameType) -> bool:
    path = os.path.abspath(frame.f_code.co_filename)
    return path.startswith(_TORCH_DIR) or path.startswith(_MASKNN_DIR)


def location() -> tuple[str, str]:
    """Where the model is now: ``("in module 'layer1.0' (BasicBlock)", "file.py:12")``.

    Walks the Python stack from the caller outward: the innermost frame whose ``self`` is
    a module of the active converted model names the module; the innermost frame outside
    torch and masknn names the line of the model's code. Only called on errors.
    """
    roots = _ROOTS
    names: dict[int, str] = {}
    if roots:
        for name, mod in roots[-1].named_modules():
            names.setdefault(id(mod), name)
    module_part = line_part = ""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and not (module_part and line_part):
        if not line_part and not _is_library(frame):
            line_part = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        if not module_part:
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in names:
                name = names[id(owner)]
                cls = type(owner).__name__
                module_part = f"in module {name!r} ({cls})" if name else f"in the model's own forward ({cls})"
        frame = frame.f_back
    return module_part or "outside any module of the converted model", line_part or "unknown"


def error(subject: str, problem: str, hint: str = "") -> ConversionError:
    """A [`ConversionError`][masknn.convert.ConversionError] about ``subject`` (an op or module) with its
    location."""
    where, line = location()
    msg = f"masknn.convert: {subject} {problem} ({where})\n  called at {line}"
    if hint:
        msg += f"\n  {hint}"
    return ConversionError(msg)
