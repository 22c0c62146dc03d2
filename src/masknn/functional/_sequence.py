"""Shared validation of per-step sequence masks (private)."""

from __future__ import annotations

from torch import Tensor

from masknn._validation import check_data, shape_str, to_bool_mask

__all__ = ["sequence_step_mask"]


def sequence_step_mask(op: str, x: Tensor, mask: object, batch_first: bool = True) -> Tensor:
    """Validate a per-step sequence mask and return it as ``(N, T)`` bool (batch first).

    ``x`` is ``(N, T, F)`` (``(T, N, F)`` with ``batch_first=False``); ``mask``
    is ``(N, T)``, ``(N, T, 1)`` or any shape that broadcasts to ``(N, T, 1)``.
    A per-feature mask ``(N, T, F)`` with ``F > 1`` is an error: a recurrent step
    is either taken or skipped.
    """
    x = check_data(op, x)
    if x.dim() != 3:
        raise ValueError(
            f"{op}: expected sequence data of 3 dimensions "
            f"{'(N, T, F)' if batch_first else '(T, N, F)'}, got {shape_str(x.shape)}"
        )
    m = to_bool_mask(op, x, mask)
    if m.shape[-1] != 1:
        raise ValueError(
            f"{op}: expected a per-step mask {'(N, T, 1)' if batch_first else '(T, N, 1)'} or "
            f"{'(N, T)' if batch_first else '(T, N)'} for data {shape_str(x.shape)}, got a per-feature mask "
            f"{shape_str(m.shape)}; fill masked features first (masknn.nn.Fill) or reduce the mask "
            "over features"
        )
    m = m.select(-1, 0).expand(x.shape[:2])
    return m if batch_first else m.t()
