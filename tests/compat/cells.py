"""One cell of the table: run a capability check on a row, or the evidence for an n/a cell."""

from __future__ import annotations

import pytest
import torch

from tests.compat.harness import (
    CHECKS,
    CompatInfo,
    check_channels_last,
    check_fullgraph,
    has_channels_last_input,
    leaves,
    make_inputs,
    step,
    twin_keeps_channels_last,
)

#: The n/a reasons of channels_last, decided live from the inputs and the twin's output.
NO_LAYOUT = "no 4-d or 5-d input: torch has no channels_last layout for it"
TWIN_DROPS = (
    "the plain twin's output is not channels_last (e.g. fewer dimensions); "
    "the values for channels_last input are still checked"
)


def na_reason(row: CompatInfo, capability: str) -> str | None:
    """Why the cell is n/a, or None when it must pass."""
    if capability == "channels_last":
        if not has_channels_last_input(row):
            return NO_LAYOUT
        return None if twin_keeps_channels_last(row) else TWIN_DROPS
    na = row.na.get(capability)
    return None if na is None else na.reason


def run_cell(row: CompatInfo, capability: str, request: pytest.FixtureRequest) -> None:
    """Passes when the masknn op has the capability, or when the cell is n/a and the plain
    twin fails the same check with the expected error (then the cell records "n/a")."""
    if capability == "channels_last" and not has_channels_last_input(row):
        first = leaves(make_inputs(row))[0]
        with pytest.raises(RuntimeError):
            first.contiguous(memory_format=torch.channels_last)
        request.node.user_properties.append(("compat_na", NO_LAYOUT))
        return
    if capability == "channels_last" and not twin_keeps_channels_last(row):
        with pytest.raises(AssertionError, match="not channels_last"):
            check_channels_last(row, twin=True)
        check_channels_last(row, layout=False)
        request.node.user_properties.append(("compat_na", TWIN_DROPS))
        return
    if capability == "compile" and row.fullgraph_na is not None:
        with pytest.raises(Exception) as info:
            check_fullgraph(row, twin=True)
        assert row.fullgraph_na.match in str(info.value), (
            "fullgraph evidence: the plain twin failed torch.compile(fullgraph=True) for another "
            f"reason than {row.fullgraph_na.match!r}: {type(info.value).__name__}: {info.value}"
        )
    na = row.na.get(capability)
    if na is None:
        with step(capability):
            CHECKS[capability](row)
        return
    with pytest.raises(Exception) as info:
        CHECKS[capability](row, twin=True)
    assert na.match in str(info.value), (
        f"n/a evidence: the plain twin failed {capability} for another reason than {na.match!r}: "
        f"{type(info.value).__name__}: {info.value}"
    )
    request.node.user_properties.append(("compat_na", na.reason))
