"""``convert(model)``: the same model, weights and code, run on masked data."""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from torch import Tensor, nn

from masknn._masked import Masked
from masknn._validation import to_bool_mask
from masknn.convert import _options, _sync
from masknn.convert._carrier import MaskedCarrier, carry, is_carrier
from masknn.convert.errors import active_model
from masknn.convert.registry import module_forward, module_handler
from masknn.functional._select import select
from masknn.functional.sync_batch_norm import _check_process_group
from masknn.nn import sync_batchnorm

__all__ = ["convert", "is_converted", "synchronize_batch_norms"]


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
    if not torch.compiler.is_compiling():
        _sync.check_followed(module)  # nothing to check without a process group
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
    out = model if inplace else copy.deepcopy(model, _shared_objects(model))
    _install_module_handlers(out)
    original = out.__dict__.get("forward")
    if _sync.torch_sync_batch_norm(out):  # the model is one torch.nn.SyncBatchNorm
        original = functools.partial(_sync.synced_forward, out, _sync.OWN_GROUP, original)
    object.__setattr__(out, "forward", functools.partial(_converted_forward, out, options, original))
    return out


def _shared_objects(model: nn.Module) -> dict[int, Any]:
    """A ``copy.deepcopy`` memo under which the copy shares the model's ``torch.distributed``
    process groups (an ``nn.SyncBatchNorm``'s ``process_group``), which cannot be copied."""
    if not torch.distributed.is_available():
        return {}
    group = torch.distributed.ProcessGroup
    return {id(v): v for m in model.modules() for v in vars(m).values() if isinstance(v, group)}


def _install_module_handlers(root: nn.Module) -> None:
    """Give each module of a registered class the registered forward (outermost first), and
    each ``torch.nn.SyncBatchNorm`` the forward that synchronizes masked statistics over its
    ``process_group`` (``masknn.convert._sync``)."""
    todo = list(root.children())
    while todo:
        mod = todo.pop()
        handler = module_handler(mod)
        if handler is None:
            if _sync.torch_sync_batch_norm(mod):
                _sync.install(mod, _sync.OWN_GROUP)
            todo.extend(mod.children())
            continue
        original = mod.__dict__.get("forward")
        object.__setattr__(mod, "forward", functools.partial(module_forward, mod, handler, original))


def _synchronizable(module: nn.Module) -> bool:
    """A batch norm of torch or of a model library (masknn's own layers take ``Masked``, not a
    converted model's data, and are not converted)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and not type(module).__module__.startswith(
        "masknn."
    )


def synchronize_batch_norms(model: nn.Module, process_group: Any = None) -> bool:
    """Synchronize every batch norm of ``model`` over ``process_group`` when ``model`` was
    returned by [`convert`][masknn.convert.convert]; return whether it was.

    What [`MaskedSyncBatchNorm.convert_sync_batchnorm`][masknn.nn.MaskedSyncBatchNorm.convert_sync_batchnorm]
    does with a converted model (it calls this): each ``nn.BatchNorm1d/2d/3d``,
    ``nn.SyncBatchNorm`` and other ``_BatchNorm`` subclass of the model (timm's
    ``BatchNormAct2d``) keeps its class, code, parameters and buffers, and in training
    mode takes its statistics over the valid positions of every rank's batch.

    Examples:
        >>> import torch
        >>> from masknn.convert import convert
        >>> from masknn.convert._model import synchronize_batch_norms
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
        >>> synchronize_batch_norms(net), synchronize_batch_norms(convert(net))
        (False, True)
    """
    if not is_converted(model):
        return False
    _check_process_group("MaskedSyncBatchNorm.convert_sync_batchnorm", process_group)
    for mod in model.modules():
        if not _synchronizable(mod):
            continue
        if mod is model:  # the converted forward stays outermost; the batch norm's runs inside it
            fwd = model.__dict__["forward"]
            original = functools.partial(
                _sync.synced_forward, mod, process_group, _sync.unwrapped(fwd.args[2])
            )
            object.__setattr__(
                model, "forward", functools.partial(_converted_forward, *fwd.args[:2], original)
            )
        else:
            _sync.install(mod, process_group)
    return True


# MaskedSyncBatchNorm.convert_sync_batchnorm (masknn.nn, a layer below this package, which
# does not import it) hands converted models to synchronize_batch_norms.
if synchronize_batch_norms not in sync_batchnorm._CONVERTED_MODELS:
    sync_batchnorm._CONVERTED_MODELS.append(synchronize_batch_norms)
