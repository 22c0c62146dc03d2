"""The carrier: a tensor subclass that takes a validity mask through a plain model's forward.

[`masknn.convert`][masknn.convert.convert] hands the model a ``MaskedCarrier`` where the model expects
its input tensor. To the model's own Python code it is a tensor (shape, dtype, device,
``isinstance(x, torch.Tensor)`` all as usual, so control flow on shapes works); every
torch function, ``Tensor`` method and Python operator applied to it reaches
``MaskedCarrier.__torch_function__``, which runs the masked rule registered for that
function (``masknn.convert._table``) or raises a [`ConversionError`][masknn.convert.ConversionError]. No
tracing:
each call is seen when it runs, whatever Python produced it.

Invariants, kept by every rule:

* ``_mm_data`` is a plain tensor (the one autograd sees) holding exactly 0 at masked
  positions (canonical form); the carrier object itself is an alias of it;
* ``_mm_mask`` is a bool tensor with the data's number of dimensions, each equal to the
  data's or 1, never an expanded (stride-0) view: see ``compress``;
* ``_mm_pad`` is ``None``, or marks positions that hold a zero written by ``F.pad``
  (see ``masknn.convert.rules.conv``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from masknn._masked import Masked
from masknn.convert import _table
from masknn.convert.errors import ConversionError, error
from masknn.functional._select import select

__all__ = [
    "MaskedCarrier",
    "carriers",
    "carry",
    "compress",
    "data_of",
    "from_masked",
    "is_carrier",
    "mask_of",
    "to_masked",
    "unwrap",
]

#: What to suggest when a common op has no rule.
_HINTS = {
    "item": "it reads a data value (Python control flow on data); masked values would decide it",
    "tolist": "it reads data values (Python control flow on data)",
    "numpy": "it leaves torch; the mask would be lost",
    "__bool__": "Python control flow on data values (if/while on a tensor)",
    "nonzero": "its output shape depends on data values",
    "matmul": "products of two data tensors (attention, bilinear forms) have no built-in masked rule",
    "bmm": "products of two data tensors (attention, bilinear forms) have no built-in masked rule",
    "einsum": "products of two data tensors (attention, bilinear forms) have no built-in masked rule",
    "__matmul__": "products of two data tensors (attention, bilinear forms) have no built-in masked rule",
    "scaled_dot_product_attention": "use masknn.nn.MaskedMultiheadAttention for masked attention",
    "__setitem__": "writing into data in place by index has no masked rule",
    "where": "a selection by a condition has no masked rule (where would the result be valid?)",
    "lstm": "use masknn.nn.MaskedLSTM (same weights) instead of nn.LSTM",
    "gru": "use masknn.nn.MaskedGRU (same weights) instead of nn.GRU",
    "multi_head_attention_forward": "use masknn.nn.MaskedMultiheadAttention instead",
    "batch_norm_stats": (
        "torch.nn.SyncBatchNorm's synchronized path, in a SyncBatchNorm that masknn.convert did not "
        "set up (torch.nn.SyncBatchNorm.convert_sync_batchnorm applied after masknn.convert, or a "
        "subclass with a forward of its own); synchronize the converted model with "
        "masknn.nn.MaskedSyncBatchNorm.convert_sync_batchnorm(model) instead, or apply torch's "
        "converter before masknn.convert"
    ),
}


class MaskedCarrier(Tensor):
    """A tensor that carries a validity mask through an unmodified model (internal).

    Built by ``carry``; never returned to users (the converted model returns
    [`masknn.Masked`][]).
    """

    _mm_data: Tensor
    _mm_mask: Tensor
    _mm_pad: Tensor | None

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        rule = _table.lookup(func)
        if rule is None:
            raise unsupported(func)
        try:
            return rule(func, args, kwargs or {})
        except ConversionError:
            raise
        except (ValueError, TypeError) as e:
            # masknn's ops check their arguments; say where in the model the call came from
            raise unsupported(func, f"its masked rule refused the call: {e}") from e


class _StoragelessCarrier(MaskedCarrier):
    """The carrier of fake and other subclass data (torch.export): a handle without storage."""

    @classmethod
    def __torch_dispatch__(  # type: ignore[override]
        cls, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        raise AssertionError(f"masknn.convert: {func} reached a carrier below __torch_function__")


def unsupported(func: Any, why: str = "") -> Exception:
    """The [`ConversionError`][masknn.convert.ConversionError] for an op without a rule (or refused by
    one)."""
    name = _table.op_name(func)
    short = name.rsplit(".", 1)[-1].split(" ")[0]
    hint = why or _HINTS.get(short, "")
    advice = "register a conversion with masknn.convert.register_function(...)"
    return error(
        name,
        "has no masked conversion" if not why else "cannot be converted",
        f"{hint}; {advice}" if hint else advice.capitalize(),
    )


def compress(mask: Tensor) -> Tensor:
    """The same mask with every expanded (stride-0) dimension narrowed to size 1 (a view).

    Keeps masks as small as their information: a channel-shared mask stays ``(N, 1, ...)``
    through permutes, slices and reshapes that expand it on the way.
    """
    if not any(st == 0 and s > 1 for s, st in zip(mask.shape, mask.stride())):
        return mask
    index = tuple(
        slice(0, 1) if st == 0 and s > 1 else slice(None) for s, st in zip(mask.shape, mask.stride())
    )
    return mask[index]


def carry(data: Tensor, mask: Tensor, pad: Tensor | None = None) -> MaskedCarrier:
    """Wrap canonical ``data`` (exactly 0 where ``mask`` is False) and its mask in a carrier."""
    if isinstance(data, MaskedCarrier):  # a rule's bug, never the user's
        raise AssertionError("masknn.convert: carry() got a carrier as data")
    if mask.dtype != torch.bool or mask.dim() != data.dim() or mask.device != data.device:
        raise AssertionError(
            f"masknn.convert: internal mask {tuple(mask.shape)} {mask.dtype} does not fit data "
            f"{tuple(data.shape)}"
        )
    for m, d in zip(mask.shape, data.shape):
        if m != d and m != 1:
            raise AssertionError(
                f"masknn.convert: internal mask {tuple(mask.shape)} does not fit data {tuple(data.shape)}"
            )
    if type(data) is Tensor or type(data) is torch.nn.Parameter:
        out = data.as_subclass(MaskedCarrier)  # an alias, attached to the autograd graph
    else:
        # Fake, functional and other subclass tensors (torch.export, torch.func) cannot take
        # a second Python type: a handle with the data's metadata and no storage. Either way
        # only ``_mm_data`` is ever computed with.
        out = Tensor._make_wrapper_subclass(
            _StoragelessCarrier,
            data.shape,
            data.stride(),
            data.storage_offset(),
            dtype=data.dtype,
            device=data.device,
        )
    out._mm_data = data
    out._mm_mask = compress(mask)
    out._mm_pad = pad
    return out


def is_carrier(x: object) -> bool:
    """True for a ``MaskedCarrier``."""
    return isinstance(x, MaskedCarrier)


def data_of(x: Any) -> Any:
    """The plain data of a carrier; anything else as it is."""
    return x._mm_data if isinstance(x, MaskedCarrier) else x


def mask_of(x: MaskedCarrier) -> Tensor:
    """The carrier's mask."""
    return x._mm_mask


def unwrap(obj: Any) -> Any:
    """``obj`` with every carrier (also inside lists, tuples and dicts) replaced by its data."""
    if isinstance(obj, MaskedCarrier):
        return obj._mm_data
    if isinstance(obj, (list, tuple)):
        items = [unwrap(o) for o in obj]
        if hasattr(obj, "_fields"):  # a NamedTuple
            return type(obj)(*items)
        return type(obj)(items)
    if isinstance(obj, dict):
        return type(obj)((k, unwrap(v)) for k, v in obj.items())
    return obj


def carriers(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[MaskedCarrier]:
    """The carriers among the arguments (top level and inside lists/tuples)."""
    found: list[MaskedCarrier] = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, MaskedCarrier):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found.extend(b for b in a if isinstance(b, MaskedCarrier))
    return found


def to_masked(obj: Any) -> Any:
    """Carriers (also nested) as [`masknn.Masked`][]; everything else as it is."""
    if isinstance(obj, MaskedCarrier):
        return Masked(obj._mm_data, obj._mm_mask)
    if isinstance(obj, Masked):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [to_masked(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        return type(obj)((k, to_masked(v)) for k, v in obj.items())
    return obj


def from_masked(obj: Any) -> Any:
    """[`masknn.Masked`][] (also nested) as carriers, made canonical; everything else as it is."""
    if isinstance(obj, Masked):
        return carry(select(obj.data, obj.mask), obj.mask)
    if isinstance(obj, (list, tuple)):
        items = [from_masked(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        return type(obj)((k, from_masked(v)) for k, v in obj.items())
    return obj
