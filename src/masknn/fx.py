"""``torch.fx`` for masknn models: a tracer that keeps masknn layers whole.

``torch.fx.symbolic_trace`` traces into every Module that is not from ``torch.nn``,
and masknn layers cannot be traced into: their forwards validate masks and choose
kernels from the shapes (Python control flow that symbolic proxies cannot follow).
[`symbolic_trace`][masknn.fx.symbolic_trace] and [`MaskedTracer`][masknn.fx.MaskedTracer] keep every masknn
Module (any class
from ``masknn.nn``, and subclasses) as a leaf ``call_module`` node, record calls of
[`masknn.functional`][] ops and ``Masked(...)`` constructions as ``call_function``
nodes, and accept ``Masked`` inputs and outputs; attribute access (``x.data``,
``x.mask``), unpacking (``out, state = lstm(x)``) and the ``Masked`` operators
(``a + b``) become ordinary nodes. The resulting ``GraphModule`` computes exactly what
the model computes, and users' own fx passes (inspection, module swaps, graph
rewrites) work on it.

Only symbolic (proxy) tracing needs this; ``torch.compile``, ``torch.export`` and
``make_fx`` trace masknn layers through their composable path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

import masknn.functional

__all__ = ["MaskedTracer", "is_masknn_module", "symbolic_trace"]


def is_masknn_module(m: nn.Module) -> bool:
    """True for an instance of a masknn layer (a class from ``masknn.nn``, or a subclass of one).

    Examples:
        >>> from torch import nn
        >>> from masknn.nn import MaskedBatchNorm2d
        >>> is_masknn_module(MaskedBatchNorm2d(4)), is_masknn_module(nn.BatchNorm2d(4))
        (True, False)
    """
    return any(c.__module__.startswith("masknn.nn") for c in type(m).__mro__)


class MaskedTracer(torch.fx.Tracer):
    """A ``torch.fx.Tracer`` for models built from masknn layers.

    Leaf modules: every masknn layer ([`is_masknn_module`][masknn.fx.is_masknn_module]), the ``torch.nn``
    layers that ``torch.fx.Tracer`` keeps as leaves, and the classes in
    ``leaf_modules``. Calls of [`masknn.functional`][] ops by their bare name
    (``from masknn.functional import masked_add``) are recorded as ``call_function``
    nodes, as functions of ``math`` are by ``torch.fx``.

    Args:
        autowrap_modules: as ``torch.fx.Tracer``; [`masknn.functional`][] is added.
        autowrap_functions: as ``torch.fx.Tracer``.
        param_shapes_constant: as ``torch.fx.Tracer``.
        leaf_modules: more Module classes to keep as leaves.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from masknn import Masked
        >>> from masknn.nn import Elementwise, PartialConv2d
        >>> model = nn.Sequential(PartialConv2d(1, 2, 3, padding=1), Elementwise(nn.ReLU()))
        >>> graph = MaskedTracer().trace(model)
        >>> [n.op for n in graph.nodes]
        ['placeholder', 'call_module', 'call_module', 'output']
    """

    def __init__(
        self,
        autowrap_modules: tuple[ModuleType, ...] = (math,),
        autowrap_functions: tuple[Callable[..., Any], ...] = (),
        param_shapes_constant: bool = False,
        *,
        leaf_modules: tuple[type[nn.Module], ...] = (),
    ) -> None:
        super().__init__(
            autowrap_modules=(*autowrap_modules, masknn.functional),  # type: ignore[arg-type]
            autowrap_functions=autowrap_functions,
            param_shapes_constant=param_shapes_constant,
        )
        self.leaf_modules = tuple(leaf_modules)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        """Whether ``m`` stays one ``call_module`` node: masknn layers, ``leaf_modules``,
        and ``torch.fx``'s own leaves."""
        return (
            is_masknn_module(m)
            or isinstance(m, self.leaf_modules)
            or super().is_leaf_module(m, module_qualified_name)
        )


def symbolic_trace(
    root: nn.Module | Callable[..., Any],
    concrete_args: dict[str, Any] | None = None,
    *,
    leaf_modules: tuple[type[nn.Module], ...] = (),
) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` for masknn models (with [`MaskedTracer`][masknn.fx.MaskedTracer]).

    Args:
        root: the model (or a function) to trace.
        concrete_args: as ``torch.fx.symbolic_trace``.
        leaf_modules: more Module classes to keep as leaves.

    Returns:
        A ``GraphModule`` that takes and returns what ``root`` does (``Masked``
        included) and shares its submodules.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from masknn import Masked
        >>> from masknn.nn import MaskedBatchNorm2d, MaskedMaxPool2d, PartialConv2d
        >>> model = nn.Sequential(PartialConv2d(1, 2, 3, padding=1), MaskedBatchNorm2d(2), MaskedMaxPool2d(2))
        >>> gm = symbolic_trace(model.eval())
        >>> x = Masked(torch.randn(1, 1, 4, 4), torch.rand(1, 1, 4, 4) > 0.3)
        >>> out, ref = gm(x), model(x)
        >>> torch.equal(out.data, ref.data) and torch.equal(out.mask, ref.mask)
        True
    """
    tracer = MaskedTracer(leaf_modules=leaf_modules)
    graph = tracer.trace(root, concrete_args)
    name = root.__class__.__name__ if isinstance(root, nn.Module) else root.__name__
    return torch.fx.GraphModule(tracer.root, graph, name)
