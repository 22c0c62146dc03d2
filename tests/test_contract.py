"""The leakage contract (DESIGN section 3) over every public masknn Module."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import masknn.nn
from masknn.testing import assert_no_leakage
from tests.module_db import Adapter, ModuleInfo, all_entries

ENTRIES = all_entries()


@pytest.mark.parametrize("info", ENTRIES, ids=[e.id for e in ENTRIES])
def test_contract(info: ModuleInfo) -> None:
    torch.manual_seed(0)
    module = info.make()
    inputs = info.inputs()
    if info.call is not None:
        module = Adapter(module, info.call)
    assert_no_leakage(module, *inputs, **info.options)


def test_every_public_module_is_in_the_table() -> None:
    public = {
        obj
        for name in masknn.nn.__all__
        if inspect.isclass(obj := getattr(masknn.nn, name)) and issubclass(obj, nn.Module)
    }
    covered = {e.cls for e in ENTRIES}
    missing = sorted(c.__name__ for c in public - covered)
    assert not missing, f"public Modules with no row in tests/module_db: {missing}"
