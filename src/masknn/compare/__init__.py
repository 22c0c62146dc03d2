"""Measure which masking strategy works on your data: ``masknn compare DATA.npz``.

The same small architecture is built under each [`Strategy`][masknn.compare.Strategy] (a fill,
optionally the mask as an extra channel, plain or mask-aware layers), trained
with the same budget and seeds, and scored on held-out samples; the result is
a table (mean ± std over seeds per missing rate) and a figure.

Examples:
    >>> import numpy as np
    >>> from masknn.compare import CompareData, compare
    >>> rng = np.random.default_rng(0)
    >>> data = CompareData(rng.random((40, 1, 8, 8)), None, np.arange(40) % 2, np.arange(40) < 30)
    >>> res = compare(data, "zero,zero+mc", rates=[0.3], seeds=1, steps=2, progress=False)
    >>> [r["strategy"] for r in res.records]
    ['zero', 'zero+mc']
"""

from masknn.compare.data import NPZ_LAYOUT, CompareData, load_npz
from masknn.compare.harness import MASK_KINDS, CompareResult, compare, simulate_masks
from masknn.compare.models import Classifier, UNet, build_model
from masknn.compare.report import format_report, format_table, noise_summary, plot_rates
from masknn.compare.strategies import (
    ALL_STRATEGIES,
    DEFAULT_STRATEGIES,
    Strategy,
    parse_strategies,
)

__all__ = [
    "ALL_STRATEGIES",
    "DEFAULT_STRATEGIES",
    "MASK_KINDS",
    "NPZ_LAYOUT",
    "Classifier",
    "CompareData",
    "CompareResult",
    "Strategy",
    "UNet",
    "build_model",
    "compare",
    "format_report",
    "format_table",
    "load_npz",
    "noise_summary",
    "parse_strategies",
    "plot_rates",
    "simulate_masks",
]
