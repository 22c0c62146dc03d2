"""Input checks shared by every masknn op and Module.

Every check raises a ``TypeError`` or ``ValueError`` whose message starts with
the name of the layer or op that was called, and names the expected and the
received shape or dtype. Nothing here broadcasts a wrong mask silently.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_data", "shape_str", "to_bool_mask"]


def shape_str(shape: Sequence[int] | torch.Size) -> str:
    """Format a shape as ``(2, 3, 4)``."""
    return str(tuple(int(s) for s in shape))


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
