"""masknn: mask-aware neural network layers for PyTorch.

A bool validity mask (True = valid) travels with the data in [`Masked`][masknn.Masked];
layers in [`masknn.nn`][] / [`masknn.functional`][] never let values at masked
positions change a valid output or receive a gradient. [`masknn.convert`][masknn.convert.convert] makes an
existing PyTorch model mask-aware with its weights. [`masknn.testing`][] checks that
promise on any model; [`masknn.masks`][] generates masks; [`masknn.fx`][] traces
masknn models for ``torch.fx`` passes.
"""

from masknn import _operators, functional, fx, masks, nn, testing  # noqa: F401  (_operators installs the Masked operators)
from masknn._masked import Masked, as_masked

# ``masknn.convert`` is the function; the package of the same name (its registry,
# ConversionError) is imported with ``from masknn.convert import ...``. For
# ``import masknn.convert as mc`` the function also carries the registry's functions.
from masknn.convert import ConversionError, register_function, register_module, unregister
from masknn.convert import convert as convert

convert.register_function = register_function  # type: ignore[attr-defined]
convert.register_module = register_module  # type: ignore[attr-defined]
convert.unregister = unregister  # type: ignore[attr-defined]
convert.ConversionError = ConversionError  # type: ignore[attr-defined]

__version__ = "0.1.0"

__all__ = ["Masked", "__version__", "as_masked", "convert", "functional", "fx", "masks", "nn", "testing"]
