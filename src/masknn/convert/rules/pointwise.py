"""Element-wise rules: activations, dropout, arithmetic and Python operators, with broadcasting.

The value is the plain op's; the mask and the canonical zeros are restored around it:

* one data operand (``relu(x)``, ``x * layer_scale``, ``x + 1``, ``x * noise``): the
  output keeps the data's mask, broadcast to the output's shape. A parameter, plain
  tensor or number combined with data never makes a masked position valid;
* two data operands: ``+``/``-`` are valid where either operand is (masked terms count
  as 0, DESIGN section 4: a residual ``out += identity``); ``*``, ``/``, ``max``, ``min``,
  ``**`` where both are (a squeeze-and-excitation ``scale * x``), and so are ``addcmul``
  and ``lerp`` where every data operand is.

Masked outputs are then set to exactly 0 (``sigmoid(0) = 0.5``, ``x + 1`` would leave
values there), except for ops that keep an exact 0 at masked positions on canonical
inputs (``relu``, ``gelu``, ``silu``, ``hardswish``, dropout, ``a + b`` of two data
operands, ``x * 2.0``), which skip that pass. Ops whose derivative is infinite at 0
(``sqrt``, ``log``, ``1 / x``, ``x ** 0.5``) see 1 at masked positions instead of 0, so
that their gradient there is an exact 0, never ``0 * inf = NaN``.

In-place forms (``relu_``, ``x += y``, ``F.relu(x, inplace=True)``) write into the
data and update the carrier's mask, so the model sees the same object back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from masknn.convert import _table
from masknn.convert._carrier import MaskedCarrier, carry, compress, unsupported
from masknn.functional._select import select

__all__: list[str] = []

# Unary ops (first argument data, the others numbers or plain tensors) that map an exact
# 0 to an exact 0 and have a bounded derivative at 0.
_KEEP_ZERO = (
    "relu",
    "relu6",
    "leaky_relu",
    "rrelu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "hardswish",
    "tanh",
    "softsign",
    "tanhshrink",
    "hardshrink",
    "softshrink",
    "neg",
    "negative",
    "abs",
    "absolute",
    "square",
    "sin",
    "sinh",
    "atan",
    "asinh",
    "erf",
    "expm1",
    "sign",
    "sgn",
    "prelu",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_dropout",
)

# Unary ops that may put a non-zero at masked positions: re-zeroed.
_RESET = (
    "sigmoid",
    "hardsigmoid",
    "logsigmoid",
    "softplus",
    "exp",
    "exp2",
    "cos",
    "cosh",
    "erfc",
    "clamp",
    "clip",
    "clamp_min",
    "clamp_max",
    "hardtanh",
    "threshold",
    "nan_to_num",
    "alpha_dropout",
    "feature_alpha_dropout",
    "round",
    "floor",
    "ceil",
    "trunc",
    "frac",
    "logit",
    "addcmul",
    "lerp",
)

# Unary ops with an infinite derivative (or value) at 0: masked inputs become 1.
_SAFE_ONE = ("sqrt", "rsqrt", "log", "log2", "log10", "log1p", "reciprocal")

_UNION = ("add", "sub", "subtract", "rsub", "__radd__", "__rsub__")
_PRODUCT = ("mul", "multiply", "__rmul__", "maximum", "minimum", "fmax", "fmin")
_DIVIDE = ("div", "divide", "true_divide", "__rtruediv__", "__rdiv__")
_POWER = ("pow", "__pow__", "__rpow__", "float_power")


def _inplace_names(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n + "_" for n in names if not n.startswith("__"))


def _fit(mask: Tensor, ndim: int) -> Tensor:
    """``mask`` with leading size-1 dimensions up to ``ndim`` (for broadcasting results)."""
    if mask.dim() < ndim:
        return mask.reshape((1,) * (ndim - mask.dim()) + tuple(mask.shape))
    return mask


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _substitute(obj: Any, one: bool) -> Any:
    """Carriers replaced by their data (``one``: with 1 at masked positions)."""
    if isinstance(obj, MaskedCarrier):
        if not one:
            return obj._mm_data
        d = obj._mm_data
        return torch.where(obj._mm_mask, d, torch.ones((), dtype=d.dtype, device=d.device))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_substitute(o, one) for o in obj)
    return obj


def _pointwise(
    kind: str,
) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
    """A rule for one family: ``keep`` (zero-preserving unary), ``reset``, ``safe`` (unary with
    1 at masked inputs), ``union`` (+, -), ``product`` (*, max, min), ``divide``, ``power``."""

    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        positions = [i for i, a in enumerate(args) if isinstance(a, MaskedCarrier)]
        if any(isinstance(v, MaskedCarrier) for v in kwargs.values()):
            raise unsupported(func, "a data tensor passed by keyword")
        if not positions:
            raise unsupported(func, "no data operand in the first positions")
        first = args[positions[0]]
        data0 = first._mm_data
        two = len(positions) > 1
        if len(positions) > 2 and kind == "union":
            raise unsupported(func, "more than two data operands")
        # Which operands see 1 at their masked positions (infinite derivative at 0)?
        safe_all = kind == "safe" or kind == "power"
        if kind == "divide":
            # the denominator: the second operand (the first for the reflected __rtruediv__)
            den = 0 if func in _REFLECTED else 1
            call_args = tuple(
                _substitute(a, one=(i == den)) if isinstance(a, MaskedCarrier) else a
                for i, a in enumerate(args)
            )
        else:
            call_args = tuple(_substitute(a, one=safe_all) for a in args)
        out = func(*call_args, **kwargs)
        if not isinstance(out, Tensor):
            raise unsupported(func, f"it returned {type(out).__name__}")
        if not out.is_floating_point():
            raise unsupported(func, f"it gives {out.dtype} data, which carries no mask")
        masks = [_fit(args[i]._mm_mask, out.dim()) for i in positions]
        mask = masks[0]
        for other in masks[1:]:
            mask = (mask | other) if kind == "union" else (mask & other)
        # the non-data operands, keyword arguments included (``torch.mul(x, other=t)``)
        others = [a for i, a in enumerate(args) if i not in positions] + list(kwargs.values())
        keeps = (
            (kind == "keep" and not two)
            or (kind == "union" and two and not kwargs)
            or (kind == "product" and not two and func in _MUL and all(_finite_number(o) for o in others))
            or (
                kind == "divide"
                and not two
                and positions == [0]
                and all(_finite_number(o) and o != 0 for o in others)
            )
        )
        if out is data0:  # in place: write the canonical zeros into the data, update the mask
            if not keeps:
                out.masked_fill_(~mask, 0)
            first._mm_mask = compress(mask)
            first._mm_pad = None
            return first
        if positions[0] != 0 and (_is_inplace(func) or out is call_args[0]):
            raise unsupported(func, "it writes data into a plain tensor in place; the mask would be lost")
        return carry(out if keeps else select(out, mask), mask)

    return rule


def _is_inplace(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    return name.endswith("_") and not name.endswith("__")


_MUL = set(_table.resolve(["mul", "multiply", "__rmul__", "mul_", "multiply_"], ["torch", "Tensor"]))
_REFLECTED = set(_table.resolve(["__rtruediv__", "__rdiv__"], ["Tensor"]))

_SPACES = ["torch", "Tensor", "torch.nn.functional", "torch._C._nn", "torch.special"]

for _names, _kind in (
    (_KEEP_ZERO, "keep"),
    (_RESET, "reset"),
    (_SAFE_ONE, "safe"),
    (_UNION, "union"),
    (_PRODUCT, "product"),
    (_DIVIDE, "divide"),
    (_POWER, "power"),
):
    _table.add(_table.resolve(_names, _SPACES), _pointwise(_kind))
    if _kind != "safe" and _kind != "power":
        _table.add(_table.resolve(_inplace_names(_names), _SPACES), _pointwise(_kind))
