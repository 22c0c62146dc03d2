"""The public registry: your own conversions for torch functions and for whole modules.

* [`register_function`][masknn.convert.register_function] tells converted models what a torch function
  (``torch.*``,
  a ``Tensor`` method, ``torch.nn.functional.*``, a custom op under ``torch.ops``) means
  on masked data. Your handler takes [`masknn.Masked`][] where the model passed data
  and returns ``Masked`` (or a tuple/list/dict of them).
* [`register_module`][masknn.convert.register_module] replaces the forward of every module of a class (and its
  subclasses) in the models you convert *afterwards*: your handler receives the module
  and its arguments, data as ``Masked``, and returns ``Masked``. Use it for modules
  whose forward does something masknn cannot follow (products of two data tensors,
  data-dependent control flow) or when you know a better masked form.

Both take precedence over the built-in rules and return the handler, so they work as
decorators. [`unregister`][masknn.convert.unregister] removes a registration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import Tensor, nn

from masknn._masked import Masked
from masknn.convert import _table
from masknn.convert._carrier import MaskedCarrier, from_masked, to_masked
from masknn.convert.errors import error

__all__ = ["module_forward", "module_handler", "register_function", "register_module", "unregister"]

H = TypeVar("H", bound=Callable[..., Any])

_MODULES: dict[type, Callable[..., Any]] = {}


def _check_result(subject: str, out: Any) -> Any:
    """Refuse a plain floating tensor in a handler's result: where would it be valid?"""
    if isinstance(out, Tensor) and not isinstance(out, MaskedCarrier) and out.is_floating_point():
        raise error(
            subject,
            "returned a plain tensor from its registered handler",
            "return masknn.Masked(data, mask) so that the mask is known",
        )
    if isinstance(out, (list, tuple)) and not isinstance(out, Masked):
        for o in out:
            _check_result(subject, o)
    if isinstance(out, dict):
        for o in out.values():
            _check_result(subject, o)
    return out


def register_function(func: Callable[..., Any], handler: H | None = None) -> Any:
    """Convert calls of the torch function ``func`` on data with ``handler``.

    ``func`` is the object the model calls (``torch.nn.functional.glu``,
    ``torch.Tensor.cumsum``, ``torch.ops.mylib.op``); register each spelling the model
    uses (``torch.relu`` and ``torch.Tensor.relu`` are different objects). ``handler``
    receives the call's arguments with every data tensor as a [`masknn.Masked`][]
    (exactly 0 at masked positions) and returns ``Masked`` (or a tuple/list/dict of
    them). It must keep the contract: masked inputs never change a valid output.

    Without ``handler``, returns a decorator.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> from masknn.convert import convert, register_function, unregister
        >>> @register_function(torch.cumsum)
        ... def masked_cumsum(x: Masked, dim: int) -> Masked:
        ...     # running sums of the valid values; valid from the first valid value on
        ...     seen = torch.cumsum(x.mask.expand(x.data.shape).int(), dim) > 0
        ...     return Masked(torch.where(seen, torch.cumsum(x.data, dim), 0.0), seen)
        >>> class Running(torch.nn.Module):
        ...     def forward(self, x):
        ...         return torch.cumsum(x, 1)
        >>> x = Masked(torch.tensor([[1.0, float("nan"), 2.0]]), torch.tensor([[True, False, True]]))
        >>> convert(Running())(x)
        Masked(data=tensor([[1., 1., 3.]]), mask=tensor([[True, True, True]]))
        >>> unregister(torch.cumsum)
    """
    if not callable(func):
        raise TypeError(f"register_function: expected a callable torch function, got {type(func).__name__}")

    def deco(h: H) -> H:
        if not callable(h):
            raise TypeError(f"register_function: expected a callable handler, got {type(h).__name__}")
        name = _table.op_name(func)

        def rule(f: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            out = h(*to_masked(args), **to_masked(kwargs))
            return from_masked(_check_result(name, out))

        _table.USER[func] = rule
        return h

    return deco(handler) if handler is not None else deco


def register_module(cls: type[nn.Module], handler: H | None = None) -> Any:
    """Run ``handler`` instead of ``forward`` for modules of class ``cls`` (or a subclass) in
    models converted from now on.

    ``handler(module, *args, **kwargs)`` receives the module (its parameters and
    buffers as they are) and the arguments the model passed, data as
    [`masknn.Masked`][], and returns ``Masked`` (or a tuple/list/dict of them). When
    the module is called without data (plain tensors only) its own forward runs.
    Without ``handler``, returns a decorator.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> from masknn.convert import convert, register_module, unregister
        >>> from masknn.functional import masked_max
        >>> class ChannelMax(torch.nn.Module):         # your module
        ...     def forward(self, x):
        ...         return x.max(dim=1, keepdim=True).values  # max with indices: no built-in rule
        >>> @register_module(ChannelMax)
        ... def _(module: ChannelMax, x: Masked) -> Masked:
        ...     return masked_max(x.data, x.mask, dim=1, keepdim=True)
        >>> model = convert(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), ChannelMax()))
        >>> model(Masked(torch.randn(2, 3, 5, 5), torch.rand(2, 1, 5, 5) > 0.5)).data.shape
        torch.Size([2, 1, 5, 5])
        >>> unregister(ChannelMax)
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_module: expected an nn.Module subclass, got {cls!r}")

    def deco(h: H) -> H:
        if not callable(h):
            raise TypeError(f"register_module: expected a callable handler, got {type(h).__name__}")
        _MODULES[cls] = h
        return h

    return deco(handler) if handler is not None else deco


def unregister(target: Any) -> None:
    """Remove the conversion registered for a function or a module class (no error if none).

    Modules already converted keep the handler they were given.

    Examples:
        >>> import torch
        >>> from masknn.convert import register_function, unregister
        >>> _ = register_function(torch.cumsum, lambda x, dim: x)
        >>> unregister(torch.cumsum)
        >>> unregister(torch.cumsum)  # nothing left: no error
    """
    _table.USER.pop(target, None)
    if isinstance(target, type):
        _MODULES.pop(target, None)


def module_handler(module: nn.Module) -> Callable[..., Any] | None:
    """The handler registered for ``module``'s class or its nearest registered base class."""
    for base in type(module).__mro__:
        h = _MODULES.get(base)
        if h is not None:
            return h
    return None


def module_forward(
    module: nn.Module,
    handler: Callable[..., Any],
    original: Callable[..., Any] | None,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """The forward installed (as a ``functools.partial``) on a module with a registered handler."""
    values = (*args, *kwargs.values())
    has_data = any(isinstance(a, MaskedCarrier) for a in values) or any(
        isinstance(b, MaskedCarrier) for a in values if isinstance(a, (list, tuple)) for b in a
    )
    if not has_data:
        forward = original or type(module).forward.__get__(module)
        return forward(*args, **kwargs)
    out = handler(module, *to_masked(args), **to_masked(kwargs))
    return from_masked(_check_result(f"module {type(module).__name__}", out))
