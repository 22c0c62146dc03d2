"""Joining rules: ``torch.cat`` and ``torch.stack`` of data tensors.

The masks are joined like the data (masknn's [`masked_cat`][masknn.functional.masked_cat]):
tensors with different masks give a per-channel mask after a channel concatenation
(a U-Net's skip connection, DenseNet's feature concatenation). When every tensor
carries the very same mask and it has size 1 along the joined dimension, it is kept as
it is (no per-channel mask). A plain tensor joined to data is refused: nothing says
where it is valid.
"""

from __future__ import annotations

from typing import Any

import torch

import masknn.functional.combine as mcomb
from masknn.convert import _table
from masknn.convert._carrier import MaskedCarrier, carry, unsupported
from masknn.convert.rules._args import REQUIRED, bind

__all__: list[str] = []


def _join(stack: bool) -> _table.Rule:
    def rule(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tensors, dim = bind(func, args, kwargs, ("tensors", "dim"), (REQUIRED, 0))
        tensors = list(tensors)
        if not tensors or any(not isinstance(t, MaskedCarrier) for t in tensors):
            raise unsupported(
                func, "it joins a plain tensor to data; nothing says where the plain tensor is valid"
            )
        if isinstance(dim, str):
            raise unsupported(func, "named dimensions")
        datas = [t._mm_data for t in tensors]
        masks = [t._mm_mask for t in tensors]
        if stack:
            d = int(dim) % (datas[0].dim() + 1)
            datas = [x.unsqueeze(d) for x in datas]
            masks = [m.unsqueeze(d) for m in masks]
        else:
            d = int(dim) % max(datas[0].dim(), 1)
        first = masks[0]
        if all(m is first for m in masks) and first.shape[d] == 1:
            return carry(torch.cat(datas, d), first)
        out = mcomb.masked_cat(datas, masks, d)
        return carry(out.data, out.mask)

    return rule


_table.add(_table.resolve(["cat", "concat", "concatenate"], ["torch"]), _join(stack=False))
_table.add(_table.resolve(["stack"], ["torch"]), _join(stack=True))
