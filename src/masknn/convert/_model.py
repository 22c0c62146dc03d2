"""``convert(model)``: the same model, weights and code, run on masked data."""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from torch import Tensor, nn

from masknn._masked import Masked
from masknn._validation import to_bool_mask
from masknn.convert import _options
from masknn.convert._carrier import MaskedCarrier, carry, is_carrier
from masknn.convert.errors import active_model
from masknn.convert.registry import module_forward, module_handler
from masknn.functional._select import select

__all__ = ["convert", "is_converted"]


def _wrap(obj: Any) -> Any:
    """Model inputs as carriers: ``Masked`` (made canonical) and floating tensors (all valid)."""
    if isinstance(obj, MaskedCarrier):
        return obj
    if isinstance(obj, Masked):
        if not obj.data.is_floating_point():
            raise TypeError(f"masknn.convert: expected floating data in a Masked input, got {obj.data.dtype}")
        mask = to_bool_mask("masknn.convert", obj.data, obj.mask)
        return carry(select(obj.data, mask), mask)
    if isinstance(obj, Tensor):
        if not obj.is_floating_point():
            return obj
        return carry(obj, torch.ones((1,) * obj.dim(), dtype=torch.bool, device=obj.device))
    if isinstance(obj, (list, tuple)):
        items = [_wrap(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        return type(obj)((k, _wrap(v)) for k, v in obj.items())
    return obj


def _unwrap(obj: Any) -> Any:
    """Model outputs as ``Masked``; dicts, tuples, lists and named tuples keep their type."""
    if is_carrier(obj):
        data, mask = obj._mm_data, obj._mm_mask
        return Masked(select(data, mask), mask)
    if isinstance(obj, Tensor):
        return Masked(obj) if obj.is_floating_point() else obj
    if isinstance(obj, Masked):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_unwrap(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        return type(obj)((k, _unwrap(v)) for k, v in obj.items())
    return obj


def _converted_forward(
    module: nn.Module, options: _options.Options, original: Any, *args: Any, **kwargs: Any
) -> Any:
    """The forward of a converted model, installed as ``functools.partial(_converted_forward,
    module, options, original)``: an instance attribute (the class and the ``state_dict`` stay
    the original's) that pickles, deep-copies and exports."""
    forward = original or type(module).forward.__get__(module)
    with active_model(module), _options.using(options):
        out = forward(*_wrap(args), **_wrap(kwargs))
    return _unwrap(out)


def is_converted(model: nn.Module) -> bool:
    """True when ``model`` was returned by [`convert`][masknn.convert.convert].

    Examples:
        >>> import torch
        >>> from masknn.convert import convert, is_converted
        >>> net = torch.nn.Conv2d(1, 1, 3)
        >>> is_converted(net), is_converted(convert(net))
        (False, True)
    """
    fwd = model.__dict__.get("forward")
    return isinstance(fwd, functools.partial) and fwd.func is _converted_forward


def convert(model: nn.Module, *, inplace: bool = False, linear_mode: str = "zero") -> nn.Module:
    """Make an existing PyTorch model mask-aware, with its weights and its own code.

    Returns a copy of ``model`` (the model itself with ``inplace=True``) whose forward
    takes [`masknn.Masked`][] where the original took a tensor (a plain floating
    tensor counts as all valid) and returns ``Masked`` where the original returned a
    tensor, keeping dict, tuple and list structure. Nothing else changes: the class,
    the submodules, the parameters and buffers under the same ``state_dict`` keys (a
    checkpoint of the original loads into the converted model, strictly, and back),
    ``train()``/``eval()``, devices and dtypes.

    While it runs, every torch function the model's code calls on data, Python
    operators included, is replaced by its masked twin from [`masknn.functional`][]
    (convolutions become partial convolutions that count zero padding as the plain
    convolution does; norms take statistics over valid positions; pooling and means
    reduce over valid positions; the mask follows views, permutes, reshapes and
    concatenations exactly). So in eval mode with an all-True mask the result equals
    the original's within float tolerance, values at masked positions never reach a
    valid output, a running statistic or a gradient, and a fully masked sample gives
    zeros with an all-False mask. An op or module without a masked rule raises a
    [`ConversionError`][masknn.convert.ConversionError] naming it and its place in the model, when
    it runs; register your own with [`register_function`][masknn.convert.register_function] and
    [`register_module`][masknn.convert.register_module] (before converting).

    Args:
        model: any ``nn.Module``.
        inplace: convert ``model`` itself instead of a deep copy.
        linear_mode: how ``F.linear`` treats masked input features: ``"zero"`` (as 0)
            or ``"partial"`` (rescaled by ``in_features / valid count``).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from masknn import Masked
        >>> from masknn.convert import convert
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
        >>> masked_net = convert(net)
        >>> x = torch.randn(4, 3, 16, 16)
        >>> out = masked_net(Masked(x, torch.ones(4, 1, 16, 16, dtype=torch.bool)))
        >>> torch.allclose(out.data, net(x), atol=1e-5)       # complete data: the same function
        True
        >>> holes = torch.rand(4, 1, 16, 16) > 0.3
        >>> out = masked_net(Masked(x.masked_fill(~holes, float("nan")), holes))
        >>> bool(out.data.isfinite().all()), out.mask.shape  # NaN in the holes never leaks
        (True, torch.Size([4, 1]))
        >>> masked_net.load_state_dict(net.state_dict())      # same keys, same weights
        <All keys matched successfully>
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"masknn.convert: expected an nn.Module, got {type(model).__name__}")
    options = _options.Options(linear_mode=linear_mode)
    if is_converted(model):
        raise ValueError("masknn.convert: the model is already converted")
    out = model if inplace else copy.deepcopy(model)
    _install_module_handlers(out)
    original = out.__dict__.get("forward")
    object.__setattr__(out, "forward", functools.partial(_converted_forward, out, options, original))
    return out


def _install_module_handlers(root: nn.Module) -> None:
    """Give each module of a registered class the registered forward (outermost first)."""
    todo = list(root.children())
    while todo:
        mod = todo.pop()
        handler = module_handler(mod)
        if handler is None:
            todo.extend(mod.children())
            continue
        original = mod.__dict__.get("forward")
        object.__setattr__(mod, "forward", functools.partial(module_forward, mod, handler, original))
