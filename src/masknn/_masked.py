"""The ``Masked`` carrier: data with a bool validity mask (True = valid).

``Masked`` is a tuple of two named fields, ``(data, mask)``, like a ``NamedTuple``
(unpacking, indexing, ``_fields``, ``_asdict``), with additions that a ``collections.namedtuple``
cannot have:

* it is registered as its own pytree node (``torch.utils._pytree``) whose unflatten
  does not validate, with the serialized type name ``"masknn.Masked"``, so
  ``tree_map``, ``torch.func.vmap`` and ``torch.export`` (including
  ``torch.export.save``/``load``) take and return it. torch's pytree treats every
  ``collections.namedtuple`` subclass as a generic namedtuple rebuilt by calling the
  class, which would run the validation on arbitrary leaves: that is why ``Masked``
  is a plain ``tuple`` subclass and not a ``NamedTuple``;
* it pickles through a rebuild function that does not validate either, allowed for
  ``torch.load(weights_only=True)`` (it only puts two already-loaded objects in a
  tuple);
* under ``torch.fx`` symbolic tracing, constructing it from proxies records a
  ``call_function`` node instead of validating proxies;
* the Python operators ``+ - * /`` and unary ``-`` do masked arithmetic instead of
  tuple concatenation and repetition (see the class docstring). Their implementation
  lives above this module (``masknn._operators``, which uses ``masknn.functional``) and
  is installed into ``_OPERATORS`` when ``masknn`` is imported, so this module imports
  nothing from the layers above it;
* ``__torch_function__`` routes the torch functions that stand for those operators
  (``Tensor.mul`` when a plain tensor comes first, and what ``torch.compile`` and
  ``torch.export`` hand over for an operator with a tensor operand) to the same
  implementation, and refuses a ``Masked`` in every other torch function.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.fx import Proxy

from masknn._validation import check_data, shape_str, to_bool_mask

__all__ = ["Masked", "as_masked"]

#: The Python operators of ``Masked`` by name (``"add"``, ``"sub"``, ``"mul"``,
#: ``"truediv"``, ``"neg"``), each ``(a, b) -> Masked`` (``neg``: ``(a,) -> Masked``).
#: Filled by ``masknn._operators`` when the package is imported.
_OPERATORS: dict[str, Callable[..., Masked]] = {}

_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "truediv": "/"}


def _traced(target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Under ``torch.fx`` symbolic tracing (an argument is a ``Proxy``): record a call of
    ``target`` and return its proxy. Otherwise ``None``."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, Proxy):
            return a.tracer.create_proxy("call_function", target, args, kwargs)
    return None


class Masked(tuple[Tensor, Tensor]):
    """Data with a validity mask, the value every masknn Module takes and returns.

    A tuple of two named fields, like ``torch.nn.utils.rnn.PackedSequence`` (not a
    Tensor subclass): ``data, mask = m``, ``m[0]``, ``len(m) == 2`` and
    ``isinstance(m, tuple)`` work. It passes unchanged through ``nn.Sequential``,
    ``torch.compile(fullgraph=True)``, ``torch.export`` (as input and output; exported
    programs save and load), ``torch.func.vmap``, pytree functions,
    ``torch.save``/``torch.load`` (also with ``weights_only=True``) and
    [`masknn.fx.symbolic_trace`][].

    Attributes:
        data: any tensor.
        mask: ``True`` where ``data`` is valid. A bool tensor, or a float/int
            tensor holding only 0 and 1 (converted). It has the data's number of
            dimensions, each equal to the data's or 1: ``(N, 1, H, W)`` shares
            one mask across channels, ``(N, C, H, W)`` masks each channel. For
            sequences ``(N, T, F)`` a mask ``(N, T)`` is accepted and stored as
            ``(N, T, 1)``. ``None`` means all valid (stored as a broadcast mask
            of ones, which costs no memory).

    Values at masked positions may hold anything (NaN, Inf included): masknn
    layers never read them. Layer outputs hold exactly 0 at masked positions.

    Arithmetic: the operators do masked arithmetic, never tuple concatenation or
    repetition. Every result holds exactly 0 at its masked positions, and values at
    masked positions reach neither a valid result nor a gradient (NaN-safe).

    * ``a + b`` and ``a - b`` for two ``Masked``: masked terms count as 0, valid where
      either is valid (the union; [`masknn.functional.masked_add`][], so
      ``a - b == a + (-b)``). A residual ``out += identity`` works as written.
    * ``a * b`` and ``a / b`` for two ``Masked``: valid where both are valid (the
      intersection; [`masknn.functional.masked_mul`][]).
    * a ``Masked`` with a plain tensor or a number, in either order (``x * s``,
      ``s * x``, ``x + bias``, ``x - t``, ``t / x``, ...): the plain operand is a
      modifier of the valid data (a squeeze-and-excitation gate, a layer-scale
      parameter, a bias, noise), so the result keeps ``x``'s mask, broadcast to the
      result's shape. To treat a plain tensor as fully valid *data* instead, wrap it:
      ``x + Masked(t)`` is valid everywhere, as [`masknn.nn.MaskedAdd`][] does with
      a plain tensor.
    * ``-x`` negates the valid data. ``x / y`` and ``t / x`` divide only where the
      denominator is valid; a valid 0 gives Inf as in torch.
    * anything else (a tuple, a list, an array, ``**``, ``@``) raises a
      ``TypeError`` that names the masknn op to use.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = torch.tensor([[1.0, float("nan"), 3.0]])
        >>> m = Masked(x, ~x.isnan())
        >>> m.mask
        tensor([[ True, False,  True]])
        >>> m.filled(0.0)
        tensor([[1., 0., 3.]])
        >>> data, mask = m  # a tuple
        >>> (m * 2.0).data  # a scale keeps the mask
        tensor([[2., 0., 6.]])
        >>> other = Masked(torch.tensor([[10.0, 20.0, 30.0]]), torch.tensor([[False, True, True]]))
        >>> s = m + other  # masked terms count as 0, valid where either is
        >>> s.data, s.mask
        (tensor([[ 1., 20., 33.]]), tensor([[True, True, True]]))
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, str]] = ("data", "mask")
    __match_args__: ClassVar[tuple[str, str]] = ("data", "mask")
    #: numpy defers every operator to ``Masked`` (which then raises a clear TypeError)
    #: instead of treating it as a nested sequence.
    __array_ufunc__: ClassVar[None] = None

    def __new__(cls, data: Tensor, mask: Tensor | None = None) -> Masked:
        if type(data) is Tensor and type(mask) is Tensor:  # no fx Proxy: straight to the mask's checks
            return tuple.__new__(cls, (data, to_bool_mask("Masked", data, mask)))
        traced = _traced(cls, data, mask)
        if traced is not None:
            return traced
        data = check_data("Masked", data)
        if mask is None:
            mask = torch.ones((1,) * data.dim(), dtype=torch.bool, device=data.device)
        else:
            mask = to_bool_mask("Masked", data, mask)
        return tuple.__new__(cls, (data, mask))

    @classmethod
    def _unchecked(cls, data: Any, mask: Any) -> Masked:
        """Build without any check: for pytree unflatten, unpickling, and ops whose
        outputs are well formed by construction. Leaves may be anything."""
        return tuple.__new__(cls, (data, mask))

    # ------------------------------------------------------------ the fields
    @property
    def data(self) -> Tensor:
        """The data tensor (field 0)."""
        return tuple.__getitem__(self, 0)

    @property
    def mask(self) -> Tensor:
        """The bool validity mask, True = valid (field 1)."""
        return tuple.__getitem__(self, 1)

    def _asdict(self) -> dict[str, Tensor]:
        """The fields as a dict, as a ``NamedTuple``'s ``_asdict``.

        With it, torch's parallel utilities recognise ``Masked`` as a named tuple and
        rebuild it where they copy inputs: ``DistributedDataParallel`` moving its inputs
        to ``device_ids`` (without it a ``Masked`` reached the model as a plain tuple),
        ``DataParallel``'s scatter, FSDP.

        Examples:
            >>> import torch
            >>> Masked(torch.tensor([1.0]), torch.tensor([True]))._asdict()
            {'data': tensor([1.]), 'mask': tensor([True])}
        """
        return {"data": self[0], "mask": self[1]}

    def __repr__(self) -> str:
        return f"Masked(data={self[0]!r}, mask={self[1]!r})"

    def __reduce__(self) -> tuple[Callable[[Any, Any], Masked], tuple[Any, Any]]:
        # Unpickled (and deep-copied) without validation, through a function that
        # torch.load(weights_only=True) allows (registered at the end of this module).
        return _rebuild_masked, (self[0], self[1])

    # ----------------------------------------------------------- arithmetic
    def __add__(self, other: Masked | Tensor | float) -> Masked:  # type: ignore[override]
        return _binary("add", self, other)

    def __radd__(self, other: Masked | Tensor | float) -> Masked:
        return _binary("add", other, self)

    def __sub__(self, other: Masked | Tensor | float) -> Masked:
        return _binary("sub", self, other)

    def __rsub__(self, other: Masked | Tensor | float) -> Masked:
        return _binary("sub", other, self)

    def __mul__(self, other: Masked | Tensor | float) -> Masked:  # type: ignore[override]
        return _binary("mul", self, other)

    def __rmul__(self, other: Masked | Tensor | float) -> Masked:  # type: ignore[override]
        return _binary("mul", other, self)

    def __truediv__(self, other: Masked | Tensor | float) -> Masked:
        return _binary("truediv", self, other)

    def __rtruediv__(self, other: Masked | Tensor | float) -> Masked:
        return _binary("truediv", other, self)

    def __neg__(self) -> Masked:
        return _operator("neg")(self)

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """The operators above when a plain tensor comes first (``t * x``: ``Tensor.mul``
        sees a ``Masked`` and defers here) and under ``torch.compile``/``torch.export``
        (which hand every operator with a tensor operand to ``__torch_function__``).
        Every other torch function refuses a ``Masked`` (``NotImplemented``: torch raises
        its ``TypeError``)."""
        op = _OPERATOR_NAMES.get(getattr(func, "__name__", ""))
        if op is None or kwargs:
            return NotImplemented
        name, kind = op
        if name == "neg":
            ok = len(args) == 1 and isinstance(args[0], Masked)
            return _operator("neg")(*args) if ok else NotImplemented
        if len(args) != 2:
            return NotImplemented
        a, b = args
        if kind == "inplace" and not isinstance(a, Masked):
            raise TypeError(
                f"Masked: a plain tensor cannot take the masked result of {_SYMBOLS[name]}= in place "
                f"(its mask would be lost); write t = t {_SYMBOLS[name]} x, which gives a Masked"
            )
        return _binary(name, b, a) if kind == "reflected" else _binary(name, a, b)

    # ----------------------------------------------------------------- views
    @property
    def shape(self) -> torch.Size:
        """The data's shape."""
        return self.data.shape

    @property
    def device(self) -> torch.device:
        """The data's device."""
        return self.data.device

    @property
    def dtype(self) -> torch.dtype:
        """The data's dtype (the mask is always bool)."""
        return self.data.dtype

    def full_mask(self) -> Tensor:
        """The mask expanded to the data's shape (a view, no copy)."""
        return self.mask.expand(self.data.shape)

    def filled(self, value: float = 0.0) -> Tensor:
        """Data with every masked position replaced by ``value`` (NaN-safe)."""
        fill = torch.tensor(value, dtype=self.data.dtype, device=self.data.device)
        return torch.where(self.mask, self.data, fill)

    def canonical(self) -> Masked:
        """The same ``Masked`` with exactly 0 at masked positions."""
        return Masked(self.filled(0.0), self.mask)

    def to(self, *args: Any, **kwargs: Any) -> Masked:
        """Like ``torch.Tensor.to``; a dtype applies to the data only."""
        data = self.data.to(*args, **kwargs)
        return Masked(data, self.mask.to(device=data.device))

    def detach(self) -> Masked:
        """The same ``Masked`` with the data detached from the autograd graph."""
        return Masked(self.data.detach(), self.mask)

    def __getattr__(self, name: str) -> Any:
        # Only reached for a name a Masked does not have. A tensor attribute asked of a
        # Masked means that a plain torch layer or function was handed one: say so.
        if name.startswith("__") or not hasattr(Tensor, name):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        raise AttributeError(_not_a_tensor(name, sys._getframe(1)))

    def valid_fraction(self) -> float:
        """Fraction of data elements that are valid."""
        n = self.data.numel()
        return float(self.full_mask().sum()) / n if n else 0.0

    def share_mask(self, dim: int | tuple[int, ...] = 1) -> Masked:
        """One mask shared along ``dim``: a position is valid where every slice along
        ``dim`` is valid (a pixel is missing when any band is).

        [`Masked.from_nan`][masknn.Masked.from_nan] on multi-band imagery ``(N, C, H, W)``
        gives a per-band mask ``(N, C, H, W)``. ``share_mask(1)`` makes it ``(N, 1, H, W)``,
        one mask for all bands: then [`MaskChannel`][masknn.nn.MaskChannel] appends one
        channel (not ``C``) and a partial convolution counts valid pixels. The data is
        unchanged; the band values of a pixel that becomes masked are no longer read.
        A mask already of size 1 along ``dim`` is kept as it is.

        Args:
            dim: the dimension (or dimensions) to share the mask along; default 1, the
                channels of ``(N, C, ...)`` data.

        Examples:
            >>> import torch
            >>> nan = float("nan")
            >>> bands = torch.tensor([[[[1.0, nan, 3.0]], [[4.0, 5.0, 6.0]]]])  # (1, 2, 1, 3)
            >>> x = Masked.from_nan(bands)
            >>> x.mask.shape  # one mask per band
            torch.Size([1, 2, 1, 3])
            >>> x.share_mask(1).mask  # one mask for both bands
            tensor([[[[ True, False,  True]]]])
        """
        op = "Masked.share_mask"
        dims = (dim,) if not isinstance(dim, (tuple, list)) else tuple(dim)
        n = self.data.dim()
        for d in dims:
            if isinstance(d, bool) or not isinstance(d, int):
                raise TypeError(f"{op}: expected dim as an int or a tuple of ints, got {dim!r}")
            if not -n <= d < n:
                raise ValueError(
                    f"{op}: dim {d} is out of range for data of shape {shape_str(self.data.shape)}"
                )
        if len({d % n for d in dims}) != len(dims):
            raise ValueError(f"{op}: dim {dim!r} names a dimension twice")
        if not dims:  # shared along no dimension (torch's all(dim=()) would reduce them all)
            return self
        return Masked._unchecked(self.data, self.mask.all(dim=dims, keepdim=True))

    # ---------------------------------------------------------- constructors
    @classmethod
    def from_value(cls, data: Tensor, value: float, *, rtol: float = 0.0, atol: float = 0.0) -> Masked:
        """Mask each element equal to a no-data ``value``.

        With ``rtol``/``atol`` a float element counts as no-data when
        ``|x - value| <= atol + rtol * |value|``. ``value`` may be NaN.

        Examples:
            >>> import torch
            >>> Masked.from_value(torch.tensor([-9999.0, 2.0]), -9999.0).mask
            tensor([False,  True])
        """
        traced = _traced(cls.from_value, data, value, rtol=rtol, atol=atol)
        if traced is not None:
            return traced
        data = check_data("Masked.from_value", data)
        return cls(data, ~_equals(data, value, rtol, atol))

    @classmethod
    def from_nan(cls, data: Tensor, *, inf: bool = True) -> Masked:
        """Mask NaN elements, and with ``inf`` (default) also +/-Inf.

        Examples:
            >>> import torch
            >>> Masked.from_nan(torch.tensor([1.0, float("nan"), float("inf")])).mask
            tensor([ True, False, False])
        """
        traced = _traced(cls.from_nan, data, inf=inf)
        if traced is not None:
            return traced
        data = check_data("Masked.from_nan", data)
        valid = torch.isfinite(data) if inf else ~torch.isnan(data)
        return cls(data, valid)

    @classmethod
    def from_lengths(cls, data: Tensor, lengths: Tensor | list[int], *, batch_first: bool = True) -> Masked:
        """Right-padded sequences: the first ``lengths[i]`` steps of sample ``i`` are valid.

        ``data`` is ``(N, T, *)`` (or ``(T, N, *)`` with ``batch_first=False``); the
        mask is ``(N, T, 1, ...)`` (resp. ``(T, N, 1, ...)``). ``lengths`` is a 1-d
        integer tensor or a sequence of ints, one per sample (empty for an empty
        batch), each in ``[0, T]``. Under ``torch.compile``/``torch.export`` the range
        is not checked (that would be data-dependent control flow): a length above
        ``T`` then makes the whole sequence valid and a negative one none of it.

        Examples:
            >>> import torch
            >>> m = Masked.from_lengths(torch.zeros(2, 3, 4), [3, 1])
            >>> m.mask[..., 0]
            tensor([[ True,  True,  True],
                    [ True, False, False]])
            >>> m.lengths()
            tensor([3, 1])
        """
        traced = _traced(cls.from_lengths, data, lengths, batch_first=batch_first)
        if traced is not None:
            return traced
        op = "Masked.from_lengths"
        data = check_data(op, data)
        if data.dim() < 2:
            raise ValueError(
                f"{op}: expected data with at least 2 dimensions (N, T, ...), "
                f"got shape {shape_str(data.shape)}"
            )
        n_dim, t_dim = (0, 1) if batch_first else (1, 0)
        n, t = data.shape[n_dim], data.shape[t_dim]
        lens = _lengths_tensor(op, lengths).to(data.device)
        if lens.dim() != 1 or lens.shape[0] != n:
            raise ValueError(
                f"{op}: expected {n} lengths (one per sample), got shape {shape_str(lens.shape)}"
            )
        if not torch.compiler.is_compiling() and bool(((lens < 0) | (lens > t)).any()):
            raise ValueError(f"{op}: lengths must lie in [0, {t}], got {lens.tolist()}")
        steps = torch.arange(t, device=data.device)
        mask = steps.unsqueeze(0) < lens.unsqueeze(1)  # (N, T)
        if not batch_first:
            mask = mask.t()
        mask = mask.reshape(mask.shape + (1,) * (data.dim() - 2))
        return cls(data, mask)

    def lengths(self, *, batch_first: bool = True, check: bool = True) -> Tensor:
        """Number of valid steps per sample (inverse of [`from_lengths`][masknn.Masked.from_lengths]).

        A step is valid when any of its elements is. With ``check`` (default) a
        mask that is not right padding (a valid step after a masked one) raises
        a ``ValueError``.
        """
        n_dim, t_dim = (0, 1) if batch_first else (1, 0)
        full = self.full_mask()
        if full.dim() < 2:
            raise ValueError(
                f"Masked.lengths: expected at least 2 dimensions (N, T, ...), "
                f"got shape {shape_str(full.shape)}"
            )
        step = full.movedim((n_dim, t_dim), (0, 1))
        if step.dim() > 2:
            step = step.flatten(2).any(-1)
        lens = step.sum(1)
        if check:
            t = step.shape[1]
            right = torch.arange(t, device=step.device).unsqueeze(0) < lens.unsqueeze(1)
            if not bool((right == step).all()):
                bad = int((right != step).any(1).nonzero()[0, 0])
                raise ValueError(
                    f"Masked.lengths: sample {bad} is not right-padded (a valid step "
                    "follows a masked one); pass check=False to count its valid steps"
                )
        return lens

    @classmethod
    def from_padding(cls, data: Tensor, mask_value: float = 0.0, *, feature_dim: int = -1) -> Masked:
        """Keras ``Masking(mask_value)`` semantics on sequences ``(N, T, F)``.

        A timestep is masked when *all* its features equal ``mask_value``
        (NaN works too, which Keras cannot do). The mask keeps the feature
        dimension as 1: ``(N, T, 1)``.

        Examples:
            >>> import torch
            >>> x = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [0.0, 5.0]]])
            >>> Masked.from_padding(x, 0.0).mask[..., 0]
            tensor([[ True, False,  True]])
        """
        traced = _traced(cls.from_padding, data, mask_value, feature_dim=feature_dim)
        if traced is not None:
            return traced
        data = check_data("Masked.from_padding", data)
        if data.dim() < 1:
            raise ValueError("Masked.from_padding: expected data with a feature dimension")
        pad = _equals(data, mask_value, 0.0, 0.0).all(dim=feature_dim, keepdim=True)
        return cls(data, ~pad)


def _operator_names() -> dict[str, tuple[str, str]]:
    """The torch functions that stand for the Python operators, by ``__name__`` (the same
    for ``torch.add``, ``Tensor.add`` and ``operator.add``; ``torch.compile`` cannot look
    functions up by identity in a dict): ``(operator, "forward" | "reflected" |
    "inplace")``. ``reflected``: ``f(a, b)`` computes ``b <op> a`` (``Tensor.__rsub__``)."""
    forms = {
        "add": (("add", "__add__"), ("__radd__",), ("add_", "__iadd__", "iadd")),
        "sub": (("sub", "subtract", "__sub__"), ("__rsub__",), ("sub_", "subtract_", "__isub__", "isub")),
        "mul": (("mul", "multiply", "__mul__"), ("__rmul__",), ("mul_", "multiply_", "__imul__", "imul")),
        "truediv": (
            ("div", "divide", "true_divide", "__truediv__", "__div__", "truediv"),
            ("__rtruediv__", "__rdiv__"),
            ("div_", "divide_", "true_divide_", "__itruediv__", "__idiv__", "itruediv"),
        ),
    }
    table: dict[str, tuple[str, str]] = {}
    for name, groups in forms.items():
        for kind, names in zip(("forward", "reflected", "inplace"), groups):
            table.update(dict.fromkeys(names, (name, kind)))
    table.update(dict.fromkeys(("neg", "negative", "__neg__"), ("neg", "forward")))
    return table


_OPERATOR_NAMES = _operator_names()


def _rebuild_masked(data: Any, mask: Any) -> Masked:
    """Unpickle a ``Masked`` (no validation: loading never fails on its contents)."""
    return Masked._unchecked(data, mask)


def _operator(name: str) -> Callable[..., Masked]:
    fn = _OPERATORS.get(name)
    if fn is None:  # only if masknn/__init__.py failed half-way
        raise RuntimeError(f"Masked: the {name!r} operator is not installed; import masknn first")
    return fn


def _binary(name: str, a: object, b: object) -> Masked:
    """``a <op> b`` with at least one ``Masked``; anything but a Masked, a tensor or a
    number is refused here, because returning ``NotImplemented`` would let Python fall
    back to tuple concatenation / repetition."""
    for other in (a, b):
        if not isinstance(other, (Masked, Tensor, numbers.Number)):
            raise TypeError(_refusal(name, a, b))
    return _operator(name)(a, b)


def _refusal(name: str, a: object, b: object) -> str:
    sym = _SYMBOLS[name]
    left, right = type(a).__name__, type(b).__name__
    hint = {
        "add": "masknn.functional.masked_add (or a + b on two Masked); "
        "to concatenate, masknn.functional.masked_cat / masknn.nn.MaskedCat",
        "sub": "a - b on two Masked (masked terms count as 0)",
        "mul": "masknn.functional.masked_mul (or a * b on two Masked)",
        "truediv": "a / b on two Masked (valid where both are)",
    }[name]
    seq = isinstance(a, (tuple, list)) and not isinstance(a, Masked)
    seq = seq or (isinstance(b, (tuple, list)) and not isinstance(b, Masked))
    extra = (
        " A Masked is not concatenated or repeated like a tuple; use tuple(m) for its fields."
        if seq and name in ("add", "mul")
        else ""
    )
    return (
        f"Masked: unsupported operand types for {sym}: {left!r} and {right!r}; a Masked combines "
        f"with a Masked, a tensor or a number: use {hint}.{extra}"
    )


def _lengths_tensor(op: str, lengths: object) -> Tensor:
    """``lengths`` as a 1-d int64 tensor, with errors that say what was expected."""
    expected = "a 1-d integer tensor or a sequence of ints (one per sample)"
    if isinstance(lengths, Tensor):
        if lengths.numel() == 0 and lengths.dim() == 1:
            return lengths.to(torch.int64)  # torch.tensor([]) is float: an empty batch
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"{op}: lengths must be integers, got a tensor of dtype {lengths.dtype}")
        return lengths
    if lengths is None or isinstance(lengths, (str, bytes)) or not hasattr(lengths, "__iter__"):
        raise TypeError(f"{op}: expected lengths as {expected}, got {type(lengths).__name__}")
    items = list(lengths)
    values: list[int] = []
    for v in items:
        try:
            if isinstance(v, bool):
                raise TypeError
            values.append(operator.index(v))
        except TypeError:
            raise TypeError(
                f"{op}: lengths must be integers, got {v!r} ({type(v).__name__}) in {type(lengths).__name__}"
            ) from None
    return torch.tensor(values, dtype=torch.int64)


def _not_a_tensor(name: str, caller: Any) -> str:
    """The message for a tensor attribute asked of a Masked, naming the layer that asked when
    the caller is a Module's method (and the way out of torch's SyncBatchNorm converter)."""
    owner = caller.f_locals.get("self") if caller is not None else None
    head = f"'Masked' object has no attribute '{name}': a Masked is a (data, mask) pair, not a tensor"
    if isinstance(owner, torch.nn.SyncBatchNorm):
        return (
            f"{head}, and torch.nn.SyncBatchNorm was given one. It probably replaced a masknn "
            "MaskedBatchNorm when the model went through torch.nn.SyncBatchNorm.convert_sync_batchnorm, "
            "which converts every _BatchNorm subclass but drops the mask: convert the model with "
            "masknn.nn.MaskedSyncBatchNorm.convert_sync_batchnorm(model) instead"
        )
    if isinstance(owner, torch.nn.Module):
        return (
            f"{head}, and the plain layer {type(owner).__name__} was given one: use its masknn twin, "
            "or leave the masked world first with x.filled(value) or masknn.nn.Unwrap"
        )
    return f"{head}: use .data, .mask or .filled(value) (a plain torch function was probably given it)"


def _equals(data: Tensor, value: float, rtol: float, atol: float) -> Tensor:
    if isinstance(value, float) and math.isnan(value):
        return torch.isnan(data)
    if rtol == 0.0 and atol == 0.0:
        return data == value
    return (data - value).abs() <= atol + rtol * abs(value)


def as_masked(layer: str, x: object) -> Masked:
    """Take a ``Masked`` as it is and a plain tensor as fully valid.

    A plain tuple of two tensors is read as ``(data, mask)`` (a ``Masked`` rebuilt
    as a plain tuple by some tool). Anything else raises a ``TypeError`` naming
    ``layer``, and for a tuple, what probably produced it: a recurrent layer's
    ``(output, state)``, or two ``Masked`` concatenated as tuples.

    Examples:
        >>> import torch
        >>> as_masked("MyLayer", torch.zeros(2, 3)).mask.shape
        torch.Size([1, 1])
        >>> as_masked("MyLayer", [torch.zeros(2)])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: MyLayer: expected data as a torch.Tensor, got list of 1 item (Tensor); pass a masknn...
    """
    if isinstance(x, Masked):
        return x
    if isinstance(x, Tensor):
        return Masked(x, None)
    if isinstance(x, (tuple, list)) and not isinstance(x, torch.nn.utils.rnn.PackedSequence):
        if isinstance(x, tuple) and len(x) == 2 and all(isinstance(t, Tensor) for t in x):
            # A Masked rebuilt as a plain tuple. Validated here so that a bad mask is
            # reported under the layer's name, not "Masked".
            try:
                mask = to_bool_mask(layer, x[0], x[1])
            except (TypeError, ValueError) as e:
                raise type(e)(
                    f"{e}. (A plain tuple of two tensors is read as (data, mask); if it is the "
                    "(output, h_n) of a plain nn.GRU/nn.RNN, pass the output only.)"
                ) from None
            return Masked(x[0], mask)
        raise TypeError(_sequence_error(layer, x))
    return Masked(check_data(layer, x), None)  # check_data raises the TypeError


def _sequence_error(layer: str, x: tuple[Any, ...] | list[Any]) -> str:
    n = len(x)
    got = (
        f"{layer}: expected data as a torch.Tensor, got {type(x).__name__} of "
        f"{n} item{'s' if n != 1 else ''} ({', '.join(type(i).__name__ for i in x)})"
    )
    if n >= 2 and all(isinstance(i, Masked) for i in x):
        return f"{got}: combine them first (a + b, a * b, masknn.nn.MaskedCat) or call the layer on each"
    if n == 2 and isinstance(x[0], Masked):
        return (
            f"{got}: probably the (output, state) pair that a recurrent layer (MaskedLSTM, MaskedGRU, "
            "MaskedRNN) returns. Pass the output on: `out, state = rnn(x)`, then call this layer on `out`"
        )
    if n == 4 and all(isinstance(i, Tensor) for i in x):
        return (
            f"{got}: probably two Masked concatenated as tuples (tuple(a) + tuple(b), or (*a, *b)). To add "
            "them use a + b on the Masked themselves (masknn.functional.masked_add, masknn.nn.MaskedAdd); "
            "to concatenate channels use masknn.functional.masked_cat / masknn.nn.MaskedCat"
        )
    return f"{got}; pass a masknn.Masked or a tensor"


def _flatten(m: Masked) -> tuple[list[Any], None]:
    return [m[0], m[1]], None


def _flatten_with_keys(m: Masked) -> tuple[list[tuple[Any, Any]], None]:
    from torch.utils._pytree import GetAttrKey

    return [(GetAttrKey("data"), m[0]), (GetAttrKey("mask"), m[1])], None


def _unflatten(values: Any, context: None) -> Masked:
    data, mask = values
    return Masked._unchecked(data, mask)


def _register() -> None:
    """Register ``Masked`` with torch: a pytree node, and a safe global for ``torch.load``.

    The only import-time side effects of masknn, both needed for the carrier to pass
    through torch's machinery; both are idempotent.
    """
    import torch.utils._pytree as pytree

    if Masked not in pytree.SUPPORTED_NODES:
        pytree.register_pytree_node(
            Masked,
            _flatten,
            _unflatten,
            serialized_type_name="masknn.Masked",
            flatten_with_keys_fn=_flatten_with_keys,
        )
    # torch.load(weights_only=True) refuses every global it does not know, to forbid
    # running code while loading. _rebuild_masked runs none: it puts two objects that
    # the unpickler already built (tensors) into a tuple, without validation.
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:
        add_safe_globals([_rebuild_masked])


_register()
