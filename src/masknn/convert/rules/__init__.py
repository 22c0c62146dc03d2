"""Built-in conversion rules, one file per family; importing this package registers them all."""

from masknn.convert.rules import combine, conv, linear, meta, norm, pointwise, pool, resample, shape

__all__ = ["combine", "conv", "linear", "meta", "norm", "pointwise", "pool", "resample", "shape"]
