"""Bring your own model: [`convert`][masknn.convert.convert] makes an existing PyTorch model mask-aware.

The model keeps its class, its code and its ``state_dict``; its forward takes
[`masknn.Masked`][] and returns ``Masked``. Conversions for torch functions and
modules that masknn does not know are added with [`register_function`][masknn.convert.register_function] and
[`register_module`][masknn.convert.register_module]. See the guide page "Bring your own model".

``masknn.convert`` (the top-level name) is the function [`convert`][masknn.convert.convert]; the rest of
this package is imported with ``from masknn.convert import ...``.
"""

from masknn.convert import rules
from masknn.convert._model import convert, is_converted
from masknn.convert._options import Options
from masknn.convert.errors import ConversionError
from masknn.convert.registry import register_function, register_module, unregister

__all__ = [
    "ConversionError",
    "Options",
    "convert",
    "is_converted",
    "register_function",
    "register_module",
    "rules",
    "unregister",
]
