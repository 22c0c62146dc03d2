"""Argument checks shared by the Modules: errors that name the Module (private)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from masknn._validation import shape_str

__all__ = ["check_device", "construct"]


def construct(layer: str, init: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run a torch Module's ``__init__`` so that its errors name ``layer``.

    torch's constructors raise ``TypeError``/``ValueError`` without the class name, and
    some raise ``AssertionError`` (``nn.MultiheadAttention``, ``nn.Embedding``) or
    ``RuntimeError`` (a negative size): those become a ``ValueError``.

    Examples:
        >>> import torch
        >>> m = torch.nn.Module.__new__(torch.nn.GroupNorm)
        >>> construct("MaskedGroupNorm", torch.nn.GroupNorm.__init__, m, 2, 3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: MaskedGroupNorm: num_channels ... must be divisible by num_groups ...
    """
    try:
        init(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{layer}: {e}") from None
    except (AssertionError, RuntimeError) as e:
        raise ValueError(f"{layer}: {e}") from None


def check_device(layer: str, x: Tensor, module: nn.Module) -> None:
    """Parameters and buffers of ``module`` (not its children) on the data's device, else a
    ``TypeError`` naming ``layer``."""
    for name, t in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if t.device != x.device:
            raise TypeError(
                f"{layer}: data {shape_str(x.shape)} is on {x.device} but {name} is on {t.device}; "
                "move both to the same device"
            )
