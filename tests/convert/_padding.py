"""The ``padding_valid=True`` semantics masknn.convert is built against, and a probe for it.

masknn.convert runs every convolution of a converted model as a partial convolution with
``padding_valid=True``, whose meaning (being settled on masknn's partial-convolution
branch) is: *zero padding counts in the window's rescale as in the plain convolution,
but an output is valid only when its window holds at least one real valid input*. An
older masknn counted the padding as valid for the output mask as well, so a fully masked
sample kept valid border outputs and failed the contract's fully-masked check.

:func:`padding_never_validates` probes the installed masknn. Where it answers False,
:func:`emulate` wraps ``masknn.functional.conv.partial_conv{1,2,3}d`` (the functions the
converter calls) so that their output mask also requires a real valid input in the
window, and re-zeros the outputs it invalidates: the specified behaviour, built from
masknn's own op. Once the installed masknn has the semantics, the probe answers True and
nothing is wrapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import masknn.functional.conv as mconv
from masknn import Masked

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def padding_never_validates() -> bool:
    """True when ``partial_conv2d(padding_valid=True)`` gives no valid output for a fully masked input."""
    out = mconv.partial_conv2d(
        torch.ones(1, 1, 3, 3),
        torch.zeros(1, 1, 3, 3, dtype=torch.bool),
        torch.ones(1, 1, 3, 3),
        padding=1,
        padding_valid=True,
    )
    return not bool(out.mask.any())


def _wrap(nd: int, original: Any) -> Any:
    def partial_conv(
        x: torch.Tensor,
        mask: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        padding_valid: bool = False,
    ) -> Masked:
        out = original(x, mask, weight, bias, stride, padding, dilation, groups, padding_valid)
        if not padding_valid:
            return out
        m = mask.expand(*mask.shape[:2], *x.shape[2:])
        if m.shape[1] == 1:
            cnt, g = m.float(), 1
        else:
            cnt, g = m.reshape(m.shape[0], groups, -1, *x.shape[2:]).sum(2, dtype=torch.float32), groups
        ones = torch.ones((g, 1, *weight.shape[2:]))
        real = _CONV[nd](cnt, ones, None, stride, padding, dilation, g) > 0
        if g > 1:
            real = real.repeat_interleave(weight.shape[0] // g, dim=1)
        valid = out.mask & real
        return Masked(torch.where(valid, out.data, 0.0), valid)

    return partial_conv


@contextmanager
def emulate(monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Wrap the partial convolutions when the installed masknn lacks the semantics; yields
    whether it did."""
    needed = not padding_never_validates()
    if needed:
        for nd in (1, 2, 3):
            name = f"partial_conv{nd}d"
            monkeypatch.setattr(mconv, name, _wrap(nd, getattr(mconv, name)))
    yield needed
