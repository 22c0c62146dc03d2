"""The table of conversion rules: which function an intercepted torch call runs instead.

A *rule* is ``rule(func, args, kwargs)``: it is called with the intercepted torch
function and its arguments as the model passed them (carriers still in them) and
returns what the model should get back. Built-in rules live in
``masknn.convert.rules``; users add theirs with
[`masknn.convert.register_function`][], which take precedence.

Functions are keyed by identity. One op reaches ``__torch_function__`` under several
objects (``torch.relu``, ``Tensor.relu``, ``torch.nn.functional.relu``, the in-place
``relu_``, property getters such as ``Tensor.shape.__get__``): ``resolve`` finds
every object a name stands for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["BUILTIN", "USER", "Rule", "add", "getter", "lookup", "op_name", "resolve"]

Rule = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]

BUILTIN: dict[Any, Rule] = {}
USER: dict[Any, Rule] = {}

_NAMESPACES: tuple[tuple[str, Any], ...] = (
    ("torch", torch),
    ("Tensor", torch.Tensor),
    ("torch.nn.functional", F),
    ("torch._C._nn", torch._C._nn),
    ("torch.special", torch.special),
)


def lookup(func: Any) -> Rule | None:
    """The rule for ``func`` (a user's first), or ``None``."""
    rule = USER.get(func)
    return rule if rule is not None else BUILTIN.get(func)


def resolve(names: Iterable[str], namespaces: Iterable[str] | None = None) -> list[Any]:
    """Every object that ``names`` stand for in torch's public namespaces (missing ones skipped)."""
    wanted = set(namespaces) if namespaces is not None else None
    out: list[Any] = []
    for name in names:
        for label, space in _NAMESPACES:
            if wanted is not None and label not in wanted:
                continue
            obj = getattr(space, name, None)
            if obj is not None and callable(obj) and not isinstance(obj, type):
                out.append(obj)
    return out


def getter(name: str) -> Any:
    """The object ``__torch_function__`` receives when the property ``Tensor.<name>`` is read."""
    return getattr(torch.Tensor, name).__get__


def add(funcs: Iterable[Any], rule: Rule) -> None:
    """Register ``rule`` (built-in) for each of ``funcs``."""
    for f in funcs:
        BUILTIN[f] = rule


def op_name(func: Any) -> str:
    """A readable name for an intercepted function: ``torch.nn.functional.conv2d``, ``Tensor.item``."""
    if type(func).__name__ == "method-wrapper":  # a property getter
        owner = getattr(func, "__self__", None)
        return f"Tensor.{getattr(owner, '__name__', '?')} (property)"
    name = getattr(func, "__name__", None) or repr(func)
    for label, space in _NAMESPACES:
        if getattr(space, name, None) is func:
            return f"{label}.{name}"
    if label_of := getattr(func, "__module__", None):
        return f"{label_of}.{getattr(func, '__qualname__', name)}"
    qual = getattr(func, "__qualname__", name)
    return f"Tensor.{name}" if qual.startswith(("TensorBase.", "Tensor.")) else str(qual)
