"""Pooling and reduction rules: max/average/adaptive pooling, ``x.mean(...)`` and friends, softmax.

* ``F.max_pool*d``, ``F.avg_pool*d``, ``F.adaptive_avg_pool*d``, ``F.adaptive_max_pool*d``
  run masknn's masked pooling (over valid inputs; valid where the window holds one);
* ``F.avg_pool*d(count_include_pad=True)`` with padding, and pooling after ``F.pad``
  with zeros, count the padded zeros in the average as the plain op does (all-valid
  parity) but never validate an output with them;
* ``x.mean(dims)``, ``sum``, ``amax``/``amin``, ``max``/``min`` without indices,
  ``var``/``std``, ``logsumexp``, ``softmax``/``log_softmax`` run the masked reductions
  (global average pooling written as ``x.mean((2, 3))`` included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import masknn.functional.pooling as mpool
import masknn.functional.reductions as mred
from masknn.convert import _table
from masknn.convert._carrier import carry, unsupported
from masknn.convert.rules._args import REQUIRED, bind
from masknn.convert.rules._common import one_data
from masknn.functional._select import select

__all__: list[str] = []

_MAX_F = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _ints(v: Any, nd: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * nd
    t = tuple(int(i) for i in v)
    return t * nd if len(t) == 1 else t


def _window_valid(
    mask: Tensor, spatial: Sequence[int], nd: int, k: Any, s: Any, p: Any, d: Any, ceil: bool
) -> Tensor:
    """Pooling windows that hold a valid input (the max of the mask; padding never counts)."""
    m = mask.expand(*mask.shape[:2], *spatial)
    return _MAX_F[nd](m.to(torch.float32), k, s, p, d, ceil) > 0


def _explicit(
    data: Tensor, mask: Tensor, pad: Tensor | None, p: tuple[int, ...]
) -> tuple[Tensor, Tensor, Tensor]:
    """Data, mask and zero-pad marks with the pooling's padding ``p`` written out as zeros."""
    flat: list[int] = []
    for v in reversed(p):
        flat += [v, v]
    spatial = data.shape[2:]
    m = F.pad(mask.expand(*mask.shape[:2], *spatial), flat, "constant", False)
    base = (
        pad.expand(*pad.shape[:2], *spatial)
        if pad is not None
        else torch.zeros((1, 1, *spatial), dtype=torch.bool, device=data.device)
    )
    counted = F.pad(base, flat, "constant", True)
    return F.pad(data, flat, "constant", 0.0), m, counted


def _max_pool(nd: int) -> _table.Rule:
    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, k, s, p, d, ceil, indices = bind(
            func,
            args,
            kwargs,
            ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
            (REQUIRED, REQUIRED, None, 0, 1, False, False),
        )
        if indices:
            raise unsupported(func, "return_indices=True (max-unpooling) has no masked rule")
        data, mask = one_data(func, x)
        if s is None or (not isinstance(s, int) and len(s) == 0):
            s = k
        op = getattr(mpool, f"masked_max_pool{nd}d")
        pad = x._mm_pad
        if pad is None:
            out = op(data, mask, k, s, p, d, bool(ceil))
            return carry(out.data, out.mask)
        # after F.pad with zeros: the zeros take part in the max, as in the plain op
        out = op(data, mask | pad, k, s, p, d, bool(ceil))
        valid = _window_valid(mask, data.shape[2:], nd, k, s, p, d, bool(ceil)) & out.mask
        return carry(select(out.data, valid), valid)

    return rule


def _avg_pool(nd: int) -> _table.Rule:
    names: tuple[str, ...] = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
    defaults: tuple[Any, ...] = (REQUIRED, REQUIRED, None, 0, False, True)
    if nd > 1:
        names, defaults = (*names, "divisor_override"), (*defaults, None)

    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, k, s, p, ceil, include_pad, *rest = bind(func, args, kwargs, names, defaults)
        if rest and rest[0] is not None:
            raise unsupported(func, "divisor_override has no masked rule")
        data, mask = one_data(func, x)
        if s is None or (not isinstance(s, int) and len(s) == 0):
            s = k
        op = getattr(mpool, f"masked_avg_pool{nd}d")
        pads = _ints(p, nd)
        pad = x._mm_pad
        counted: Tensor | None = None
        if include_pad and any(pads):
            if ceil:
                raise unsupported(func, "ceil_mode=True with padding and count_include_pad=True")
            data, mask, counted = _explicit(data, mask, pad, pads)
            p = 0
        elif pad is not None:
            counted = pad
        if counted is None:
            out = op(data, mask, k, s, p, bool(ceil))
            return carry(out.data, out.mask)
        out = op(data, mask | counted, k, s, p, bool(ceil))
        valid = _window_valid(mask, data.shape[2:], nd, k, s, p, 1, bool(ceil)) & out.mask
        return carry(select(out.data, valid), valid)

    return rule


def _adaptive(nd: int, kind: str) -> _table.Rule:
    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names: tuple[str, ...] = ("input", "output_size")
        defaults: tuple[Any, ...] = (REQUIRED, REQUIRED)
        if kind == "max":
            names, defaults = (*names, "return_indices"), (*defaults, False)
        x, size, *rest = bind(func, args, kwargs, names, defaults)
        if rest and rest[0]:
            raise unsupported(func, "return_indices=True has no masked rule")
        data, mask = one_data(func, x)
        out = getattr(mpool, f"masked_adaptive_{kind}_pool{nd}d")(data, mask, size)
        return carry(out.data, out.mask)

    return rule


def _dims(dim: Any) -> Any:
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return None
    return tuple(dim) if isinstance(dim, (tuple, list)) else dim


def _reduce(kind: str) -> _table.Rule:
    """``mean``/``sum`` (``dtype`` allowed) and ``amax``/``amin``/``logsumexp``."""
    names = ("input", "dim", "keepdim", "dtype") if kind in ("mean", "sum") else ("input", "dim", "keepdim")

    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, dim, keepdim, *rest = bind(func, args, kwargs, names, (REQUIRED, None, False, None)[: len(names)])
        data, mask = one_data(func, x)
        op = {
            "mean": mred.masked_mean,
            "sum": mred.masked_sum,
            "amax": mred.masked_max,
            "amin": mred.masked_min,
            "logsumexp": mred.masked_logsumexp,
        }[kind]
        if isinstance(dim, str) or (isinstance(dim, (tuple, list)) and any(isinstance(d, str) for d in dim)):
            raise unsupported(func, "named dimensions")
        out = op(data, mask, _dims(dim), bool(keepdim))
        value = out.data if not rest or rest[0] is None else out.data.to(rest[0])
        return carry(value, out.mask)

    return rule


def _extreme(largest: bool) -> _table.Rule:
    """``max``/``min``: over everything (no dim), or element-wise with another tensor."""
    fallback = _table.resolve(["maximum" if largest else "minimum"], ["torch"])[0]

    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) == 1 and not kwargs:
            data, mask = one_data(func, args[0])
            out = (mred.masked_max if largest else mred.masked_min)(data, mask)
            return carry(out.data, out.mask)
        other = args[1] if len(args) > 1 else kwargs.get("other")
        if isinstance(other, Tensor):
            pointwise = _table.lookup(fallback)
            assert pointwise is not None
            return pointwise(fallback, (args[0], other), {})
        raise unsupported(
            func, "max/min along a dimension returns indices, which have no masked rule; use amax/amin"
        )

    return rule


def _var(std: bool) -> _table.Rule:
    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0] if args else kwargs.get("input")
        data, mask = one_data(func, x)
        rest = list(args[1:])
        dim: Any = kwargs.get("dim")
        unbiased: Any = kwargs.get("unbiased")
        keepdim = bool(kwargs.get("keepdim", False))
        correction: Any = kwargs.get("correction")
        if rest and isinstance(rest[0], bool):  # var(x, unbiased)
            unbiased = rest.pop(0)
        elif rest:
            dim = rest.pop(0)
            if rest:
                unbiased = rest.pop(0)
            if rest:
                keepdim = bool(rest.pop(0))
        if correction is None:
            correction = 0 if unbiased is False else 1
        op = mred.masked_std if std else mred.masked_var
        out = op(data, mask, _dims(dim), keepdim, int(correction))
        return carry(out.data, out.mask)

    return rule


def _softmax(log: bool, functional: bool) -> _table.Rule:
    names: tuple[str, ...] = (
        ("input", "dim", "_stacklevel", "dtype") if functional else ("input", "dim", "dtype")
    )
    defaults: tuple[Any, ...] = (REQUIRED, None, 3, None) if functional else (REQUIRED, None, None)

    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x, dim, *rest = bind(func, args, kwargs, names, defaults)
        if dim is None:
            raise unsupported(func, "softmax without dim (the implicit choice is deprecated)")
        data, mask = one_data(func, x)
        dtype = rest[-1]
        if dtype is not None:
            data = data.to(dtype)
        out = (mred.masked_log_softmax if log else mred.masked_softmax)(data, mask, int(dim))
        return carry(out.data, out.mask)

    return rule


def _norm(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The 2-norm over the valid elements (``Tensor.norm``, ``torch.norm``, ``vector_norm``)."""
    x, p, dim, keepdim, *_ = bind(
        func, args, kwargs, ("input", "p", "dim", "keepdim", "dtype"), (REQUIRED, "fro", None, False, None)
    )
    if p not in (2, 2.0, "fro"):
        raise unsupported(func, f"p={p!r} (only the 2-norm has a masked rule)")
    data, mask = one_data(func, x)
    return carry(*_two_norm(data, mask, _dims(dim), bool(keepdim)))


def _vector_norm(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x, ord_, dim, keepdim, *_ = bind(
        func, args, kwargs, ("x", "ord", "dim", "keepdim", "dtype"), (REQUIRED, 2, None, False, None)
    )
    if ord_ not in (2, 2.0):
        raise unsupported(func, f"ord={ord_!r} (only the 2-norm has a masked rule)")
    data, mask = one_data(func, x)
    return carry(*_two_norm(data, mask, _dims(dim), bool(keepdim)))


def _two_norm(data: Tensor, mask: Tensor, dim: Any, keepdim: bool) -> tuple[Tensor, Tensor]:
    """``sqrt(Σ x²)`` over valid elements; the square root sees 1 where the sum is 0 (finite gradient)."""
    sq = mred.masked_sum(data * data, mask, dim, keepdim)
    pos = sq.data > 0
    root = torch.sqrt(torch.where(pos, sq.data, torch.ones_like(sq.data)))
    return torch.where(pos, root, torch.zeros_like(root)), sq.mask


def _normalize(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``F.normalize``: ``x / max(‖x‖, eps)`` with the norm over the valid elements; the data's mask."""
    x, p, dim, eps, *_ = bind(
        func, args, kwargs, ("input", "p", "dim", "eps", "out"), (REQUIRED, 2.0, 1, 1e-12, None)
    )
    if p not in (2, 2.0):
        raise unsupported(func, f"p={p!r} (only the 2-norm has a masked rule)")
    data, mask = one_data(func, x)
    norm, _ = _two_norm(data, mask, dim, True)
    out = data / norm.clamp_min(eps)
    return carry(select(out, mask), mask)


_table.add(_table.resolve(["norm"], ["torch", "Tensor"]), _norm)
_table.add([torch.linalg.vector_norm], _vector_norm)
_table.add(_table.resolve(["normalize"], ["torch.nn.functional"]), _normalize)

for _nd in (1, 2, 3):
    _table.add(_table.resolve([f"max_pool{_nd}d"], ["torch", "torch.nn.functional"]), _max_pool(_nd))
    _table.add(
        _table.resolve([f"avg_pool{_nd}d"], ["torch", "torch.nn.functional", "torch._C._nn"]), _avg_pool(_nd)
    )
    _table.add(
        _table.resolve([f"adaptive_avg_pool{_nd}d"], ["torch", "torch.nn.functional", "torch._C._nn"]),
        _adaptive(_nd, "avg"),
    )
    # (torch.adaptive_max_pool*d always return indices too: only the functional form is converted)
    _table.add(_table.resolve([f"adaptive_max_pool{_nd}d"], ["torch.nn.functional"]), _adaptive(_nd, "max"))
for _kind in ("mean", "sum", "amax", "amin", "logsumexp"):
    _table.add(_table.resolve([_kind], ["torch", "Tensor"]), _reduce(_kind))
_table.add(_table.resolve(["max"], ["torch", "Tensor"]), _extreme(True))
_table.add(_table.resolve(["min"], ["torch", "Tensor"]), _extreme(False))
_table.add(_table.resolve(["var"], ["torch", "Tensor"]), _var(False))
_table.add(_table.resolve(["std"], ["torch", "Tensor"]), _var(True))
_table.add(_table.resolve(["softmax"], ["torch.nn.functional"]), _softmax(False, True))
_table.add(_table.resolve(["log_softmax"], ["torch.nn.functional"]), _softmax(True, True))
_table.add(_table.resolve(["softmax"], ["torch", "Tensor"]), _softmax(False, False))
_table.add(_table.resolve(["log_softmax"], ["torch", "Tensor"]), _softmax(True, False))
