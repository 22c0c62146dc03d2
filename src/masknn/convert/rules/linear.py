"""The ``F.linear`` rule: masknn's masked linear layer on the valid input features.

The mode comes from [`masknn.convert.convert`][]'s ``linear_mode``: ``"zero"`` (the
default: masked features count as 0, the plain layer's result on zero-filled input) or
``"partial"`` (rescaled by ``in_features / valid count``). Either way an output row is
valid where at least one of its input features is, and equals the plain layer's on
complete rows. Per-position linear layers (ConvNeXt's MLP after a permute) see a row
mask ``(..., 1)`` and keep it.
"""

from __future__ import annotations

from typing import Any

import masknn.functional.linear as mlin
from masknn.convert import _options, _table
from masknn.convert._carrier import carry
from masknn.convert.rules._args import REQUIRED, bind
from masknn.convert.rules._common import one_data

__all__: list[str] = []


def _linear(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x, w, b = bind(func, args, kwargs, ("input", "weight", "bias"), (REQUIRED, REQUIRED, None))
    data, mask = one_data(func, x, (w, b))
    out = mlin.masked_linear(data, mask, w, b, mode=_options.current().linear_mode)
    return carry(out.data, out.mask)


_table.add(_table.resolve(["linear"], ["torch.nn.functional", "torch._C._nn"]), _linear)
