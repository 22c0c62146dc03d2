"""The table of every public masknn Module, run through the leakage contract.

Like PyTorch's ``module_db``: each area of the library adds a file here named
``db_<area>.py`` that defines ``ENTRIES: list[ModuleInfo]``. ``all_entries()``
collects them; ``tests/test_contract.py`` runs :func:`masknn.testing.assert_no_leakage`
over each, and fails when a public Module of ``masknn.nn`` has no entry.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class ModuleInfo:
    """One row of the table.

    Attributes:
        cls: the public Module class this row covers.
        make: builds the module (seeded by the test before the call).
        inputs: builds the positional inputs (a tuple; ``Masked`` ones are perturbed).
        id: a test id; several rows may cover one class.
        call: optional adapter ``(module, *inputs) -> output`` (e.g. losses with a target).
        options: extra keyword arguments for ``assert_no_leakage``.
    """

    cls: type[nn.Module]
    make: Callable[[], nn.Module]
    inputs: Callable[[], tuple[Any, ...]]
    id: str = ""
    call: Callable[..., Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = self.cls.__name__


class Adapter(nn.Module):
    """Wraps a module with a call adapter so the checker deep-copies and switches modes on it."""

    def __init__(self, module: nn.Module, call: Callable[..., Any]) -> None:
        super().__init__()
        self.module = module
        self._call = call

    def forward(self, *args: Any) -> Any:
        return self._call(self.module, *args)


def all_entries() -> list[ModuleInfo]:
    entries: list[ModuleInfo] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("db_"):
            mod = importlib.import_module(f"{__name__}.{info.name}")
            entries.extend(mod.ENTRIES)
    return entries
