"""Rules that read no data value: metadata queries, tensor factories, dtype and device moves.

* metadata (``x.shape``, ``x.size()``, ``x.dim()``, ``x.dtype``, ``x.requires_grad``, ...)
  is read from the data and returned as it is, so Python control flow on shapes works;
* factories (``torch.zeros_like(x)``, ``x.new_empty(...)``) return plain tensors: they
  hold no data value (a plain tensor later combined with data keeps the data's mask);
* ``detach``, ``to``/``float``/``type_as`` (floating dtypes and devices), ``clone``,
  ``contiguous`` keep the mask (moved with the data).
"""

from __future__ import annotations

from typing import Any

import torch

from masknn.convert import _table
from masknn.convert._carrier import MaskedCarrier, carriers, carry, data_of, mask_of, unsupported, unwrap

__all__: list[str] = []

_GETTERS = (
    "shape",
    "dtype",
    "device",
    "ndim",
    "requires_grad",
    "is_leaf",
    "grad_fn",
    "layout",
    "is_cuda",
    "is_cpu",
    "is_meta",
    "is_mps",
    "is_xpu",
    "is_sparse",
    "is_quantized",
    "is_nested",
    "is_mkldnn",
    "names",
    "itemsize",
    "nbytes",
    "output_nr",
    "_version",
    "_base",
    "is_sparse_csr",
    "grad",
    "_grad",
    "_grad_fn",
    "_backward_hooks",
    "_post_accumulate_grad_hooks",
    "retains_grad",
    "is_ipu",
    "is_maia",
    "is_vulkan",
    "is_mtia",
)

_METHODS = (
    "size",
    "dim",
    "ndimension",
    "numel",
    "nelement",
    "stride",
    "is_contiguous",
    "is_floating_point",
    "is_complex",
    "is_signed",
    "element_size",
    "get_device",
    "data_ptr",
    "storage_offset",
    "__len__",
    "is_inference",
    "is_set_to",
    "is_same_size",
    "has_names",
    "is_pinned",
    "dim_order",
    "_is_view",
    "is_neg",
    "is_conj",
    "_is_zerotensor",
    "untyped_storage",
    "_typed_storage",
    "is_shared",
    "_use_count",
    "_is_any_true",
)

_FACTORIES = (
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "rand_like",
    "randn_like",
    "randint_like",
    "new_empty",
    "new_zeros",
    "new_ones",
    "new_full",
    "new_tensor",
    "new_empty_strided",
)


def _passthrough(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return func(*unwrap(args), **unwrap(kwargs))


def _getter(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return func(data_of(args[0]))


def _repr(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    x = args[0]
    return f"MaskedCarrier(data={data_of(x)!r},\n              mask={mask_of(x)!r})"


def _inplace_meta(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    func(*unwrap(args), **unwrap(kwargs))
    return args[0]


def _same_mask(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``detach``, ``clone``, ``contiguous``, ``to``, ``float``, ...: the mask follows the data."""
    x = args[0]
    if not isinstance(x, MaskedCarrier) or len(carriers(args, kwargs)) != 1:
        return _passthrough(func, args, kwargs)
    out = func(*unwrap(args), **unwrap(kwargs))
    if out is x._mm_data:  # nothing changed (``.to`` to the same dtype and device)
        return x
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.shape != x._mm_data.shape:
        raise unsupported(func, "it converts the data to a non-floating dtype, where the mask cannot follow")
    pad = x._mm_pad.to(out.device) if x._mm_pad is not None else None
    return carry(out, x._mm_mask.to(out.device), pad)


def _data(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``x.data``: the detached data, same mask."""
    x = args[0]
    return carry(x._mm_data.data, x._mm_mask, x._mm_pad)


_table.add([_table.getter(n) for n in _GETTERS if hasattr(torch.Tensor, n)], _getter)
_table.add([_table.getter("data")], _data)
_table.add(_table.resolve(_METHODS, ["Tensor"]), _passthrough)
_table.add(_table.resolve(_FACTORIES, ["torch", "Tensor"]), _passthrough)
_table.add(_table.resolve(["requires_grad_", "retain_grad"], ["Tensor"]), _inplace_meta)
_table.add([torch.Tensor.__repr__, torch.Tensor.__format__], _repr)
_table.add(
    _table.resolve(
        [
            "detach",
            "clone",
            "contiguous",
            "to",
            "float",
            "double",
            "half",
            "bfloat16",
            "type_as",
            "cpu",
            "cuda",
        ],
        ["torch", "Tensor"],
    ),
    _same_mask,
)
