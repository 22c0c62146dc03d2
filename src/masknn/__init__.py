"""masknn: mask-aware neural network layers for PyTorch.

A bool validity mask (True = valid) travels with the data in [`Masked`][masknn.Masked];
layers in [`masknn.nn`][] / [`masknn.functional`][] never let values at masked
positions change a valid output or receive a gradient. [`masknn.testing`][]
checks that promise on any model; [`masknn.masks`][] generates masks;
[`masknn.fx`][] traces masknn models for ``torch.fx`` passes.
"""

from masknn import _operators, functional, fx, masks, nn, testing  # noqa: F401  (_operators installs the Masked operators)
from masknn._masked import Masked, as_masked

__version__ = "0.1.0"

__all__ = ["Masked", "__version__", "as_masked", "functional", "fx", "masks", "nn", "testing"]
