"""The ``Masked`` carrier: data with a bool validity mask (True = valid)."""

from __future__ import annotations

import math
import sys
from typing import Any, NamedTuple

import torch
from torch import Tensor

from masknn._validation import check_data, shape_str, to_bool_mask

__all__ = ["Masked", "as_masked"]


class _MaskedFields(NamedTuple):
    data: Tensor
    mask: Tensor


class Masked(_MaskedFields):
    """Data with a validity mask, the value every masknn Module takes and returns.

    A ``NamedTuple`` (like :class:`torch.nn.utils.rnn.PackedSequence`), not a
    Tensor subclass, so it passes through ``nn.Sequential``, ``torch.compile``
    and fx unchanged.

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

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = torch.tensor([[1.0, float("nan"), 3.0]])
        >>> m = Masked(x, ~x.isnan())
        >>> m.mask
        tensor([[ True, False,  True]])
        >>> m.filled(0.0)
        tensor([[1., 0., 3.]])
    """

    __slots__ = ()

    def __new__(cls, data: Tensor, mask: Tensor | None = None) -> Masked:
        data = check_data("Masked", data)
        if mask is None:
            mask = torch.ones((1,) * data.dim(), dtype=torch.bool, device=data.device)
        else:
            mask = to_bool_mask("Masked", data, mask)
        return super().__new__(cls, data, mask)

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
        """Like :meth:`torch.Tensor.to`; a dtype applies to the data only."""
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
        data = check_data("Masked.from_nan", data)
        valid = torch.isfinite(data) if inf else ~torch.isnan(data)
        return cls(data, valid)

    @classmethod
    def from_lengths(cls, data: Tensor, lengths: Tensor | list[int], *, batch_first: bool = True) -> Masked:
        """Right-padded sequences: the first ``lengths[i]`` steps of sample ``i`` are valid.

        ``data`` is ``(N, T, *)`` (or ``(T, N, *)`` with ``batch_first=False``); the
        mask is ``(N, T, 1, ...)`` (resp. ``(T, N, 1, ...)``).

        Examples:
            >>> import torch
            >>> m = Masked.from_lengths(torch.zeros(2, 3, 4), [3, 1])
            >>> m.mask[..., 0]
            tensor([[ True,  True,  True],
                    [ True, False, False]])
            >>> m.lengths()
            tensor([3, 1])
        """
        data = check_data("Masked.from_lengths", data)
        if data.dim() < 2:
            raise ValueError(
                f"Masked.from_lengths: expected data with at least 2 dimensions "
                f"(N, T, ...), got shape {shape_str(data.shape)}"
            )
        n_dim, t_dim = (0, 1) if batch_first else (1, 0)
        n, t = data.shape[n_dim], data.shape[t_dim]
        lens = torch.as_tensor(lengths, device=data.device)
        if lens.dim() != 1 or lens.shape[0] != n:
            raise ValueError(
                f"Masked.from_lengths: expected {n} lengths (one per sample), "
                f"got shape {shape_str(lens.shape)}"
            )
        if lens.is_floating_point() or lens.dtype == torch.bool:
            raise TypeError(f"Masked.from_lengths: lengths must be integers, got {lens.dtype}")
        if bool(((lens < 0) | (lens > t)).any()):
            raise ValueError(f"Masked.from_lengths: lengths must lie in [0, {t}], got {lens.tolist()}")
        steps = torch.arange(t, device=data.device)
        mask = steps.unsqueeze(0) < lens.unsqueeze(1)  # (N, T)
        if not batch_first:
            mask = mask.t()
        mask = mask.reshape(mask.shape + (1,) * (data.dim() - 2))
        return cls(data, mask)

    def lengths(self, *, batch_first: bool = True, check: bool = True) -> Tensor:
        """Number of valid steps per sample (inverse of :meth:`from_lengths`).

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
        step = full.movedim((n_dim, t_dim), (0, 1)).reshape(full.shape[n_dim], full.shape[t_dim], -1)
        step = step.any(-1)
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
        data = check_data("Masked.from_padding", data)
        if data.dim() < 1:
            raise ValueError("Masked.from_padding: expected data with a feature dimension")
        pad = _equals(data, mask_value, 0.0, 0.0).all(dim=feature_dim, keepdim=True)
        return cls(data, ~pad)


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

    Raises a ``TypeError`` naming ``layer`` for anything else (a
    ``PackedSequence`` included).
    """
    if isinstance(x, Masked):
        return x
    if isinstance(x, tuple) and len(x) == 2 and all(isinstance(t, Tensor) for t in x):
        # A NamedTuple rebuilt as a plain tuple (e.g. by some tracers). Validated here so
        # that a bad mask is reported under the layer's name, not "Masked".
        return Masked(x[0], to_bool_mask(layer, x[0], x[1]))
    data = check_data(layer, x)
    return Masked(data, None)
