"""The data the harness takes, and the ``.npz`` layout of a user's own data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["NPZ_LAYOUT", "CompareData", "load_npz"]

NPZ_LAYOUT = """\
The .npz layout read by `masknn compare DATA.npz` (numpy.savez):

  x      float (N, C, H, W) or (N, H, W)   images; NaN marks missing values (with a
         channel-shared mask, a NaN in any channel masks that pixel in all channels)
  mask   optional, bool or 0/1, (N, 1, H, W), (N, C, H, W) or (N, H, W):
         True/1 = valid. Combined with the NaNs of x.
  y      int (N,)                          class labels  -> classification (accuracy)
         or float (N, K, H, W) / (N, H, W) per-pixel targets -> regression with a
         small U-Net (RMSE on target pixels hidden from the input). NaN = no target.
  y_mask optional, bool (N, 1|K, H, W): where the regression target is known.
  train  optional, bool (N,): True = training sample. Default: a seeded 80/20 split.

Missing values: when x has none, masks are simulated (--mask-kinds, --rates); when it has
some, its own mask is used, and --rates simulates masks on top of it."""
"""The ``.npz`` layout that ``masknn compare`` reads (printed by ``masknn compare --layout``)."""


class CompareData:
    """Validated arrays for [`masknn.compare.compare`][] (see [`NPZ_LAYOUT`][masknn.compare.NPZ_LAYOUT]).

    Args:
        x: images ``(N, C, H, W)`` or ``(N, H, W)``; NaN marks missing values.
        mask: None or bool / 0-1 ``(N, 1|C, H, W)``, True = valid.
        y: int labels ``(N,)`` (classification) or float targets ``(N, K, H, W)`` (regression).
        train: bool ``(N,)``, True = training sample.
        y_mask: where regression targets are known (besides their NaNs).
        name: used in titles and file names.
        split: how ``train`` was chosen, in words (for the report).

    After validation: ``x`` float32 (0 at masked positions), ``mask`` bool,
    ``y`` int64 or float32, ``y_mask`` bool (regression) or None, ``train``
    bool, ``kind`` ``"classify"`` or ``"regress"``.
    """

    def __init__(
        self,
        x: np.ndarray,
        mask: np.ndarray | None,
        y: np.ndarray,
        train: np.ndarray,
        y_mask: np.ndarray | None = None,
        name: str = "data",
        split: str = "given by the caller",
    ) -> None:
        self.name = name
        self.split = split
        self.kind = "classify"
        self.y_mask: np.ndarray | None = None
        self._validate(x, mask, y, train, y_mask)

    def _validate(
        self,
        x: np.ndarray,
        mask: np.ndarray | None,
        y: np.ndarray,
        train: np.ndarray,
        y_mask: np.ndarray | None,
    ) -> None:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise ValueError(f"compare data: x must be (N, C, H, W) or (N, H, W), got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"compare data: x must hold real numbers, got dtype {x.dtype}")
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"compare data: need at least 2 samples, got {n}")
        x = x.astype(np.float32)
        m = _as_mask("mask", mask, x.shape)
        m = m & np.isfinite(x).all(axis=1, keepdims=True) if m.shape[1] == 1 else m & np.isfinite(x)
        self.x = np.where(m, x, 0.0).astype(np.float32)
        self.mask = m
        y = np.asarray(y)
        if y.shape[:1] != (n,):
            raise ValueError(f"compare data: y must have N={n} rows like x, got shape {y.shape}")
        if y.ndim == 1:
            if np.issubdtype(y.dtype, np.floating):
                if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                    raise ValueError(
                        "compare data: 1-D y must hold integer class labels; for regression give "
                        "per-pixel targets (N, K, H, W)"
                    )
            elif not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"compare data: y must be integer labels, got dtype {y.dtype}")
            y = y.astype(np.int64)
            if y.min() < 0:
                raise ValueError(f"compare data: class labels must be >= 0, got {y.min()}")
            if len(np.unique(y)) < 2:
                raise ValueError("compare data: classification needs at least 2 classes in y")
            self.kind = "classify"
            self.y_mask = None
        else:
            if y.ndim == 3:
                y = y[:, None]
            if y.ndim != 4 or y.shape[2:] != x.shape[2:]:
                raise ValueError(
                    f"compare data: regression targets must be (N, K, H, W) with the H, W of x "
                    f"{x.shape[2:]}, got shape {y.shape}"
                )
            y = y.astype(np.float32)
            ym = np.isfinite(y)
            if y_mask is not None:
                ym = ym & _as_mask("y_mask", y_mask, y.shape)
            self.y = np.where(ym, y, 0.0).astype(np.float32)
            self.y_mask = ym
            self.kind = "regress"
        if self.kind == "classify":
            self.y = y
        t = np.asarray(train)
        if t.shape != (n,):
            raise ValueError(f"compare data: train must be a bool vector of length N={n}, got {t.shape}")
        t = t.astype(bool)
        if t.all() or not t.any():
            raise ValueError("compare data: train must mark at least one training and one test sample")
        self.train = t

    @property
    def has_missing(self) -> bool:
        return not bool(self.mask.all())

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1 if self.kind == "classify" else int(self.y.shape[1])


def _as_mask(name: str, mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones((shape[0], 1, *shape[2:]), dtype=bool)
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[:, None]
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number) or not np.isin(m, (0, 1)).all():
            raise ValueError(f"compare data: {name} must be bool or hold only 0 and 1 (1 = valid)")
        m = m.astype(bool)
    ok = m.ndim == 4 and m.shape[0] == shape[0] and m.shape[2:] == shape[2:] and m.shape[1] in (1, shape[1])
    if not ok:
        raise ValueError(
            f"compare data: {name} must have shape (N, 1, H, W) or (N, C, H, W) = "
            f"{(shape[0], shape[1], *shape[2:])}, got {m.shape}"
        )
    return m


def load_npz(path: str | Path, seed: int = 0, test_fraction: float = 0.2) -> CompareData:
    """Read and validate a user's ``.npz`` (layout: [`NPZ_LAYOUT`][masknn.compare.NPZ_LAYOUT]).

    Examples:
        >>> import numpy as np, tempfile, os
        >>> rng = np.random.default_rng(0)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "mine.npz")
        ...     np.savez(p, x=rng.random((20, 8, 8)), y=np.arange(20) % 2)
        ...     data = load_npz(p)
        >>> data.kind, data.x.shape, int(data.train.sum())
        ('classify', (20, 1, 8, 8), 16)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"masknn compare: no such file {str(path)!r}")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for key in ("x", "y"):
        if key not in arrays:
            raise ValueError(f"masknn compare: {path.name} has no array {key!r}.\n{NPZ_LAYOUT}")
    unknown = set(arrays) - {"x", "mask", "y", "y_mask", "train"}
    if unknown:
        raise ValueError(f"masknn compare: {path.name} has unknown arrays {sorted(unknown)}.\n{NPZ_LAYOUT}")
    n = len(arrays["x"])
    if "train" in arrays:
        train = arrays["train"]
        split = "the file's train array"
    else:
        rng = np.random.default_rng(seed)
        train = np.ones(n, dtype=bool)
        train[rng.permutation(n)[: max(1, int(round(test_fraction * n)))]] = False
        split = f"a random split, {test_fraction:.0%} test, seed {seed}"
    return CompareData(
        arrays["x"], arrays.get("mask"), arrays["y"], train, arrays.get("y_mask"), name=path.stem, split=split
    )
