"""Make ``import torchvision`` work beside a CPU-only torch (test and example helper).

PyPI's torchvision wheels (0.28.0 is the release matching torch 2.13.0) are linked
against the CUDA build of torch. Beside the CPU build installed here their compiled
extension ``torchvision._C`` fails to load, so ``torchvision.extension._has_ops()`` is
False and none of the C++ operators (``torchvision::nms``, ``roi_align``, ...) get
registered. Most of torchvision copes with that, but ``torchvision/_meta_registrations.py``
unconditionally registers fake (meta) kernels for two of them with
``torch.library.register_fake("torchvision::nms")`` and ``("torchvision::qnms")``, which
raises ``RuntimeError: operator torchvision::nms does not exist`` and aborts
``import torchvision`` (and with it ``import timm`` and ``import
segmentation_models_pytorch``, which import torchvision).

:func:`install` declares exactly those operators (their schemas are torchvision's
own) with :func:`torch.library.define` before the import, when they are missing.
Nothing else is changed: the declared operators have no kernel, so calling one
(non-maximum suppression, detection models) still fails loudly; the pure-Python
classification and segmentation models, which never call them, import and run.
Where torchvision's extension does load (a matching wheel), the operators exist and
this does nothing.

torchvision, timm and segmentation_models_pytorch are test and example
dependencies of masknn (the ``models`` extra), never runtime ones.
"""

from __future__ import annotations

import torch

#: The operators that ``import torchvision`` registers fake kernels for even without its
#: extension, with the schemas torchvision declares for them.
SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_LIBS: list[torch.library.Library] = []  # kept alive: a Library's definitions die with it


def _exists(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


def install() -> None:
    """Declare the missing ``torchvision::`` operators (idempotent)."""
    missing = {name: schema for name, schema in SCHEMAS.items() if not _exists(name)}
    if not missing:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in missing.items():
        lib.define(name + schema)
    _LIBS.append(lib)
