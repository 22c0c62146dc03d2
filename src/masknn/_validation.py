"""Input checks shared by every masknn op and Module.

Every check raises a ``TypeError`` or ``ValueError`` whose message starts with
the name of the layer or op that was called, and names the expected and the
received shape or dtype. Nothing here broadcasts a wrong mask silently.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

__all__ = [
    "OutOfRangeError",
    "check_choice",
    "check_data",
    "check_dim",
    "check_int",
    "check_number",
    "eager_checks",
    "shape_str",
    "to_bool_mask",
]


class OutOfRangeError(ValueError, IndexError):
    """A dimension argument out of range for the data, or an index (a class target, a token id)
    out of range for what it indexes.

    A ``ValueError`` (masknn's rule: bad input raises ``ValueError``/``TypeError`` naming
    the layer) that is also an ``IndexError``, the exception torch raises for most of
    these, so that code written for either catches it.

    Examples:
        >>> check_dim("MaskedCat", "dim", 7, 4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        masknn._validation.OutOfRangeError: MaskedCat: dim 7 is out of range for data with 4 dimensions; ...
    """


def shape_str(shape: Sequence[int] | torch.Size) -> str:
    """Format a shape as ``(2, 3, 4)``."""
    return str(tuple(int(s) for s in shape))


def eager_checks(*tensors: object) -> bool:
    """True where a check may read tensor values (``.item()``, ``bool(t.any())``): plain eager
    mode on plain tensors, any device. False under ``torch.compile``/``torch.export``, tracing,
    ``torch.func`` transforms and Python dispatch or function modes, where a data-dependent
    check would break the graph or fail on fake tensors; torch's own errors apply there.

    Examples:
        >>> import torch
        >>> eager_checks(torch.zeros(2))
        True
    """
    if (
        torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch._C._are_functorch_transforms_active()
        or torch._C._is_torch_function_mode_enabled()
        or _get_current_dispatch_mode() is not None
    ):
        return False
    return all(t is None or type(t) in (Tensor, torch.nn.Parameter) for t in tensors)


def check_dim(layer: str, name: str, dim: object, ndim: int) -> int:
    """``dim`` made non-negative for data with ``ndim`` dimensions, or an ``OutOfRangeError``.

    As torch, a 0-d tensor takes the dimensions ``-1`` and ``0``. ``dim`` must be an
    ``int`` (a ``TypeError`` otherwise).

    Examples:
        >>> check_dim("MaskedCat", "dim", -1, 4)
        3
    """
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{layer}: expected {name} as an int, got {type(dim).__name__} {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise OutOfRangeError(
            f"{layer}: {name} {dim} is out of range for data with {ndim} dimensions; expected a "
            f"dimension in [{-n}, {n - 1}] (torch raises IndexError: Dimension out of range)"
        )
    return dim % n


def check_int(layer: str, name: str, value: object, minimum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a bool) of at least ``minimum``; else a ``TypeError``
    (not an int) or a ``ValueError`` (too small), naming ``layer`` and ``name``.

    Examples:
        >>> check_int("MaskedGroupNorm", "num_groups", 0, 1)
        Traceback (most recent call last):
        ...
        ValueError: MaskedGroupNorm: expected num_groups as an int >= 1, got 0
    """
    if not isinstance(value, int) or isinstance(value, bool):
        want = "an int" if minimum is None else f"an int >= {minimum}"
        raise TypeError(f"{layer}: expected {name} as {want}, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{layer}: expected {name} as an int >= {minimum}, got {value}")
    return value


def check_number(
    layer: str,
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> float:
    """``value`` as a float if it is a real number (not a bool) in ``[low, high]`` (``(low,
    high]`` with ``low_open``; NaN only without bounds); else a ``TypeError`` or ``ValueError``
    naming ``layer``.

    Examples:
        >>> check_number("MaskedBatchNorm2d", "momentum", 1.5, 0.0, 1.0)
        Traceback (most recent call last):
        ...
        ValueError: MaskedBatchNorm2d: expected momentum in [0.0, 1.0], got 1.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{layer}: expected {name} as a number, got {type(value).__name__} {value!r}")
    v = float(value)
    too_low = low is not None and (v <= low if low_open else v < low)
    bounded = low is not None or high is not None
    if too_low or (high is not None and v > high) or (bounded and v != v):
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        raise ValueError(f"{layer}: expected {name} in {'(' if low_open else '['}{lo}, {hi}], got {value!r}")
    return v


def check_choice(layer: str, name: str, value: object, choices: Sequence[object]) -> None:
    """Raise a ``ValueError`` naming ``layer`` unless ``value`` is one of ``choices``.

    Examples:
        >>> check_choice("MaskedMSELoss", "reduction", "avg", ("none", "sum", "mean"))
        Traceback (most recent call last):
        ...
        ValueError: MaskedMSELoss: reduction must be one of ('none', 'sum', 'mean'), got 'avg'
    """
    if not isinstance(value, Hashable) or value not in choices:
        raise ValueError(f"{layer}: {name} must be one of {tuple(choices)}, got {value!r}")


def check_data(layer: str, data: object) -> Tensor:
    """Return ``data`` if it is a tensor, else raise a ``TypeError`` naming ``layer``."""
    if isinstance(data, torch.nn.utils.rnn.PackedSequence):
        raise TypeError(
            f"{layer}: got a PackedSequence; masknn takes a padded tensor with a "
            "validity mask instead: masknn.Masked.from_lengths(padded, lengths)"
        )
    if not isinstance(data, Tensor):
        if isinstance(data, torch.fx.Proxy):
            raise TypeError(
                f"{layer}: got a torch.fx Proxy: torch.fx.symbolic_trace traces into masknn layers, "
                "whose forwards cannot run on proxies. Trace with masknn.fx.symbolic_trace (or "
                "masknn.fx.MaskedTracer), which keeps masknn Modules as leaves and records calls of "
                "masknn.functional ops made by their bare name (from masknn.functional import ...)"
            )
        raise TypeError(f"{layer}: expected data as a torch.Tensor, got {type(data).__name__}")
    return data


def to_bool_mask(layer: str, data: Tensor, mask: object, *, allow_sequence: bool = True) -> Tensor:
    """Validate ``mask`` against ``data`` and return it as a bool tensor.

    Rules (DESIGN section 1):

    * the mask is a tensor on the data's device;
    * bool masks are taken as they are; float or integer masks must hold only
      0 and 1 and are converted (1 = valid);
    * it has the data's number of dimensions and each of its dimensions equals
      the data's or is 1;
    * with ``allow_sequence``, a 2-d mask ``(N, T)`` given for 3-d data
      ``(N, T, F)`` is taken as ``(N, T, 1)``.
    """
    if type(mask) is Tensor and mask.dtype is torch.bool:
        # The common case in a few comparisons (every rule below holds); else the checks below.
        ms, ds = mask.shape, data.shape
        if (
            len(ms) == len(ds)
            and (ms == ds or all(a == b or a == 1 for a, b in zip(ms, ds)))
            and ((mask.is_cpu and data.is_cpu) or mask.device == data.device)
        ):
            return mask
    if isinstance(mask, torch.nn.utils.rnn.PackedSequence):
        raise TypeError(f"{layer}: got a PackedSequence as mask; expected a bool tensor")
    if not isinstance(mask, Tensor):
        raise TypeError(f"{layer}: expected the mask as a torch.Tensor, got {type(mask).__name__}")
    if mask.device != data.device:
        raise ValueError(
            f"{layer}: mask is on device {mask.device} but data is on {data.device}; "
            "move both to the same device"
        )
    if mask.dtype != torch.bool:
        if mask.is_complex():
            raise TypeError(f"{layer}: expected a bool (or 0/1) mask, got dtype {mask.dtype}")
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            first = [int(i) for i in bad.nonzero()[0]]
            raise ValueError(
                f"{layer}: a {mask.dtype} mask must hold only 0 (masked) and 1 (valid); "
                f"found {mask[tuple(first)].item()!r} at index {tuple(first)}"
            )
        mask = mask != 0
    if (
        allow_sequence
        and mask.dim() == 2
        and data.dim() == 3
        and mask.shape[0] == data.shape[0]
        and mask.shape[1] == data.shape[1]
    ):
        mask = mask.unsqueeze(-1)
    if mask.dim() != data.dim():
        raise ValueError(
            f"{layer}: mask shape {shape_str(mask.shape)} does not fit data shape "
            f"{shape_str(data.shape)}: expected {data.dim()} dimensions, each equal to the "
            f"data's or 1, got {mask.dim()}"
        )
    for i, (m, d) in enumerate(zip(mask.shape, data.shape)):
        if m != d and m != 1:
            raise ValueError(
                f"{layer}: mask shape {shape_str(mask.shape)} does not fit data shape "
                f"{shape_str(data.shape)}: dimension {i} is {m}, expected {d} or 1"
            )
    return mask
