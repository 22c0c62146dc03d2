"""How the rows call a masknn op and its plain PyTorch twin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from masknn import Masked


def unary(layer: nn.Module, x: Tensor, m: Tensor) -> Any:
    """Calls a masknn Module on ``Masked(x, m)``."""
    return layer(Masked(x, m))


def binary(layer: nn.Module, x: Tensor, m: Tensor, y: Tensor, m2: Tensor) -> Any:
    """Calls a masknn Module on ``Masked(x, m), Masked(y, m2)``."""
    return layer(Masked(x, m), Masked(y, m2))


def parent(cls: type[nn.Module]) -> Callable[..., Any]:
    """The twin of a masknn Module that subclasses ``cls``: ``cls.forward`` on the data alone."""

    def twin(layer: nn.Module, x: Tensor, *rest: Any) -> Any:
        return cls.forward(layer, x)

    return twin


def on_data(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A twin that applies ``fn(x)`` to the data, ignoring the mask."""

    def twin(layer: nn.Module, x: Tensor, *rest: Any) -> Any:
        return fn(x)

    return twin
