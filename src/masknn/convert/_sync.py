"""Batch norms of a converted model synchronized across ``torch.distributed`` processes.

Two ways in, one mechanism:

* ``masknn.convert(torch.nn.SyncBatchNorm.convert_sync_batchnorm(model))``: every
  ``torch.nn.SyncBatchNorm`` that [`masknn.convert`][masknn.convert.convert] finds is
  synchronized over its own ``process_group`` (read when it runs, as torch does);
* ``MaskedSyncBatchNorm.convert_sync_batchnorm(masknn.convert(model), process_group)``:
  every batch norm of the converted model (``nn.BatchNorm1d/2d/3d``, ``nn.SyncBatchNorm``,
  subclasses whose forward calls ``F.batch_norm``, such as timm's ``BatchNormAct2d``) is
  synchronized over ``process_group``.

A synchronized batch norm keeps its class, its code and its ``state_dict`` entries, like
everything in a converted model. Its instance ``forward`` becomes
``functools.partial(synced_forward, module, group, original)``: the module's own forward,
run with the module on a stack that the ``F.batch_norm`` rule reads
(``masknn.convert.rules.norm``, through ``sync_group``).
In training mode that rule takes the statistics over the valid positions of every rank's
batch with [`masknn.functional.masked_sync_batch_norm`][]; in eval mode, or without an
initialized process group, it is the usual masked batch norm.

``torch.nn.SyncBatchNorm.forward`` calls ``F.batch_norm`` only when it does not
synchronize; when it does, it refuses CPU tensors, or calls CUDA statistics kernels that no
rule can make mask-aware. For it (and for subclasses that keep its forward) the forward of
torch's ``_BatchNorm`` runs instead: the same arguments, always through ``F.batch_norm``.
A subclass with a forward of its own that calls ``super().forward`` (timm's
``SyncBatchNormAct``) cannot be followed.

``check_followed`` (run by the converted forward when a process group is initialized)
refuses, before the model runs, every ``nn.SyncBatchNorm`` in training mode that would take
torch's synchronized path: one added after ``masknn.convert`` (torch's converter applied to
the converted model) or one with a forward of its own. Without it torch would refuse CPU
tensors with its own message, or reach its CUDA statistics kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
from torch import nn

from masknn.convert._carrier import MaskedCarrier
from masknn.convert.errors import ConversionError
from masknn.convert.registry import module_forward

__all__ = [
    "OWN_GROUP",
    "check_followed",
    "install",
    "is_synced",
    "sync_group",
    "synced_forward",
    "torch_sync_batch_norm",
    "unwrapped",
]

#: The group of a ``torch.nn.SyncBatchNorm``: its own ``process_group`` attribute, read
#: when it runs (a string, so that it survives ``copy.deepcopy`` and pickling as itself;
#: a process group is never a string).
OWN_GROUP = "the module's process_group"

# The synchronized batch norms now running, innermost last: (module, group). A plain list,
# as masknn.convert's other stacks: torch.compile traces its pushes and pops.
_SCOPES: list[tuple[nn.Module, Any]] = []


def torch_sync_batch_norm(module: nn.Module) -> bool:
    """True for a ``torch.nn.SyncBatchNorm`` whose forward is torch's (not overridden)."""
    return isinstance(module, nn.SyncBatchNorm) and type(module).forward is nn.SyncBatchNorm.forward


def _has_data(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return any(isinstance(a, MaskedCarrier) for a in (*args, *kwargs.values()))


def _batch_norm_forward(module: nn.SyncBatchNorm, x: Any) -> Any:
    """``torch.nn.SyncBatchNorm``'s forward without its synchronized branch: ``_BatchNorm``'s,
    which hands the same arguments to ``F.batch_norm`` (after torch's own input checks)."""
    module._check_non_zero_input_channels(x)
    return nn.modules.batchnorm._BatchNorm.forward(module, x)


def synced_forward(
    module: nn.Module, group: Any, original: Callable[..., Any] | None, *args: Any, **kwargs: Any
) -> Any:
    """The forward of a synchronized batch norm in a converted model (installed by ``install``)."""
    if not _has_data(args, kwargs):  # plain tensors (the module called outside the model): as it is
        return (original or type(module).forward.__get__(module))(*args, **kwargs)
    if original is not None:
        forward = original
    elif isinstance(module, nn.SyncBatchNorm) and torch_sync_batch_norm(module):
        forward = functools.partial(_batch_norm_forward, module)
    else:
        forward = type(module).forward.__get__(module)
    _SCOPES.append((module, group))
    try:
        return forward(*args, **kwargs)
    finally:
        _SCOPES.pop()


def is_synced(module: nn.Module) -> bool:
    """True when ``module``'s forward is a synchronized batch norm's (``install`` ran on it)."""
    fwd = module.__dict__.get("forward")
    return isinstance(fwd, functools.partial) and fwd.func is synced_forward


def unwrapped(forward: Any) -> Any:
    """``forward`` without a synchronized-batch-norm wrapper (its original; ``None``: the class's)."""
    if isinstance(forward, functools.partial) and forward.func is synced_forward:
        return forward.args[2]
    return forward


def install(module: nn.Module, group: Any) -> None:
    """Synchronize ``module`` (a batch norm of a converted model, not its root) over ``group``:
    a process group, ``None`` (the default group) or ``OWN_GROUP``. Replaces an earlier
    synchronization."""
    original = unwrapped(module.__dict__.get("forward"))
    wrapped = functools.partial(synced_forward, module, group, original)
    object.__setattr__(module, "forward", wrapped)


def sync_group(training: bool) -> tuple[bool, Any]:
    """``(True, process group)`` when the batch norm being converted belongs to a synchronized
    batch norm in training mode that normalizes with batch statistics (``training``, the
    ``F.batch_norm`` argument); ``(False, None)`` otherwise (as torch, eval mode never
    synchronizes). The group ``None`` is the default group."""
    if not _SCOPES or not training:
        return False, None
    module, group = _SCOPES[-1]
    if not module.training:
        return False, None
    if isinstance(group, str):  # OWN_GROUP; torch: ``process_group or WORLD``
        group = getattr(module, "process_group", None)
    return True, group


def _followed(module: nn.Module, root: nn.Module) -> bool:
    """True when ``module`` (an ``nn.SyncBatchNorm`` in ``root``, a converted model) runs
    through ``synced_forward`` with torch's forward, which masknn replaces by ``F.batch_norm``."""
    if not torch_sync_batch_norm(module):
        return False
    fwd = module.__dict__.get("forward")
    if module is root and isinstance(fwd, functools.partial) and len(fwd.args) > 2:
        fwd = fwd.args[2]  # the converted forward of a model that is itself a batch norm
    return isinstance(fwd, functools.partial) and fwd.func is synced_forward


def check_followed(root: nn.Module) -> None:
    """Refuse an ``nn.SyncBatchNorm`` of the converted model ``root`` that would synchronize
    with torch's own (unmasked) kernels: in training mode, with a process group of more
    than one process, not set up by masknn.

    Examples:
        >>> import torch
        >>> check_followed(torch.nn.Sequential(torch.nn.SyncBatchNorm(2)))  # no process group
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    todo: list[nn.Module] = [root]
    while todo:
        mod = todo.pop()
        fwd = mod.__dict__.get("forward")
        if isinstance(fwd, functools.partial) and fwd.func is module_forward:
            continue  # a registered handler runs instead of this module's code and its children's
        # reversed: the first refused module in model order is the one named
        todo.extend(c for c in reversed(mod._modules.values()) if c is not None)
        if not isinstance(mod, nn.SyncBatchNorm) or not mod.training or _followed(mod, root):
            continue
        if dist.get_world_size(mod.process_group or dist.group.WORLD) < 2:
            continue  # torch does not synchronize: its forward calls F.batch_norm
        name = next(n for n, m in root.named_modules(remove_duplicate=False) if m is mod)
        cls = type(mod).__name__
        where = f"module {name!r} ({cls})" if name else f"the model itself ({cls})"
        if torch_sync_batch_norm(mod):
            why = (
                "was added after masknn.convert (torch.nn.SyncBatchNorm.convert_sync_batchnorm "
                "applied to the converted model?)"
            )
        else:
            why = f"has a forward of its own ({cls}.forward) around torch's synchronized one"
        raise ConversionError(
            f"masknn.convert: {where} would synchronize its batch statistics with torch's own "
            f"kernels, which cannot be made mask-aware: it {why}.\n  Synchronize the converted model "
            "with masknn.nn.MaskedSyncBatchNorm.convert_sync_batchnorm(model) (it takes over "
            "nn.SyncBatchNorm layers), or apply torch's converter before masknn.convert; "
            "for a batch norm with a forward of its own, convert its unsynchronized twin "
            "(e.g. timm's BatchNormAct2d) or register a conversion with masknn.convert.register_module"
        )
