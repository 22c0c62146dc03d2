"""Bad data given to every public Module of the table raises a clear ValueError/TypeError.

Each row of ``tests/module_db`` is run with its first ``Masked`` input changed (one more
channel, one more last feature, an extra leading dimension, one dimension fewer,
float64 data for float32 parameters): the Module must either accept it or raise a
``ValueError``/``TypeError`` naming the layer, never a raw ``RuntimeError``,
``AssertionError`` or ``NotImplementedError`` from deep inside torch.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from masknn import Masked
from masknn import nn as mnn
from tests.module_db import Adapter, ModuleInfo, all_entries

# Wrappers around a user's own module: its errors are the user's module's.
_USER_MODULES = (mnn.PostMask, mnn.Elementwise)
ENTRIES = [e for e in all_entries() if not issubclass(e.cls, _USER_MODULES)]


def _named(layer: str, message: str) -> bool:
    """True when ``message`` starts with the layer's own name (a Module's errors name the Module,
    never the functional op it calls: ``PartialConv2d``, not ``partial_conv2d``)."""
    return message.split(":", 1)[0] == layer


def _variants(x: Masked) -> dict[str, Masked]:
    d, m = x.data, x.mask
    out = {
        "extra-leading-dim": Masked(d.unsqueeze(0), m.unsqueeze(0)),
        "one-dim-fewer": Masked(d[0], m[0]),
        "float64": Masked(d.double(), m),
    }
    if d.dim() >= 2:
        out["one-more-channel"] = Masked(
            torch.cat([d, d[:, :1]], 1), torch.cat([m, m[:, :1]], 1) if m.shape[1] > 1 else m
        )
        out["one-more-feature"] = Masked(
            torch.cat([d, d[..., :1]], -1), torch.cat([m, m[..., :1]], -1) if m.shape[-1] > 1 else m
        )
    return out


@pytest.mark.parametrize("info", ENTRIES, ids=[e.id for e in ENTRIES])
def test_bad_data_raises_a_clear_error(info: ModuleInfo) -> None:
    torch.manual_seed(0)
    made = info.make()
    # A pipeline entry (nn.Sequential of masknn layers) may fail in any of its layers: the one
    # that raises names itself.
    layers = {info.cls.__name__} | {
        type(m).__name__ for m in made.modules() if type(m).__module__.startswith("masknn.")
    }
    module: Callable[..., object] = made
    inputs = list(info.inputs())
    if info.call is not None:
        module = Adapter(module, info.call)  # type: ignore[arg-type]
    i = next(j for j, a in enumerate(inputs) if isinstance(a, Masked))
    for name, bad in _variants(inputs[i]).items():
        args = list(inputs)
        args[i] = bad
        try:
            module(*args)
        except (ValueError, TypeError) as e:
            assert any(_named(layer, str(e)) for layer in layers), f"{info.id} with {name} data: {e}"
        except Exception as e:
            pytest.fail(f"{info.id} with {name} data raised {type(e).__name__}: {e}")


def _has_state(info: ModuleInfo) -> bool:
    made = info.make()
    return any(True for _ in made.parameters()) or any(True for _ in made.buffers())


# Only Modules with parameters or buffers can hold them on another device: the others are
# not applicable (not collected, rather than skipped). The list is checked below.
STATEFUL = [e for e in ENTRIES if _has_state(e)]


def test_the_device_rows_are_the_stateful_modules() -> None:
    # Guards the filter: a bug in _has_state that dropped rows would pass silently.
    names = {e.cls.__name__ for e in STATEFUL}
    assert names >= {"PartialConv2d", "MaskedBatchNorm2d", "MaskedLSTM", "MaskedLinear", "LearnedFill"}
    assert not names & {"MaskedMaxPool2d", "MaskedFlatten", "MaskChannel"}


@pytest.mark.parametrize("info", STATEFUL, ids=[e.id for e in STATEFUL])
def test_parameters_on_another_device_raise_a_clear_error(info: ModuleInfo) -> None:
    # The "meta" device stands in for a GPU: CPU data, parameters and buffers elsewhere.
    torch.manual_seed(0)
    made = info.make()
    module: Callable[..., object] = made.to("meta")
    if info.call is not None:
        module = Adapter(made, info.call)
    with pytest.raises((ValueError, TypeError)) as err:
        module(*info.inputs())
    assert _named(info.cls.__name__, str(err.value)), str(err.value)
