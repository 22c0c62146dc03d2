from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masknn.compare import CompareData, load_npz


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_load_classification_with_nan_holes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((10, 2, 6, 6)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    data = load_npz(_save(tmp_path / "a.npz", x=x, y=np.arange(10) % 3, train=np.arange(10) < 7))
    assert data.kind == "classify" and data.num_classes == 3
    assert data.mask.shape == (10, 1, 6, 6)
    assert not data.mask[0, 0, 2, 3] and data.mask.sum() == 10 * 36 - 1  # channel-shared mask
    assert np.isfinite(data.x).all() and data.has_missing
    assert data.train.sum() == 7


def test_load_regression_with_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((8, 6, 6))
    mask = rng.random((8, 6, 6)) > 0.2
    y = rng.random((8, 6, 6))
    y[:, 0, 0] = np.nan
    data = load_npz(_save(tmp_path / "r.npz", x=x, mask=mask.astype(np.float32), y=y))
    assert data.kind == "regress" and data.y.shape == (8, 1, 6, 6)
    assert data.y_mask is not None and not data.y_mask[:, 0, 0, 0].any()
    assert (data.mask[:, 0] == mask).all()
    assert data.train.sum() == 6  # default 80/20 split, seeded


def test_default_split_is_seeded(tmp_path: Path) -> None:
    p = _save(tmp_path / "s.npz", x=np.zeros((20, 4, 4)), y=np.arange(20) % 2)
    assert (load_npz(p).train == load_npz(p).train).all()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.arange(4) % 2}, "no array 'x'"),
        ({"x": np.zeros((4, 3, 3))}, "no array 'y'"),
        ({"x": np.zeros((4, 3, 3)), "y": np.arange(4) % 2, "z": np.zeros(1)}, "unknown arrays"),
        ({"x": np.zeros((4, 3)), "y": np.arange(4) % 2}, r"\(N, C, H, W\)"),
        ({"x": np.zeros((4, 3, 3)), "y": np.arange(5) % 2}, "N=4 rows"),
        ({"x": np.zeros((4, 3, 3)), "y": np.array([0.5, 1, 0, 1])}, "integer class labels"),
        ({"x": np.zeros((4, 3, 3)), "y": np.zeros(4, dtype=int)}, "at least 2 classes"),
        ({"x": np.zeros((4, 3, 3)), "y": np.array([0, 1, -1, 1])}, ">= 0"),
        ({"x": np.zeros((4, 3, 3)), "y": np.zeros((4, 2, 2))}, "regression targets"),
        ({"x": np.zeros((4, 3, 3)), "y": np.arange(4) % 2, "mask": np.zeros((4, 2, 2))}, "mask must have"),
        ({"x": np.zeros((4, 3, 3)), "y": np.arange(4) % 2, "mask": np.full((4, 3, 3), 0.5)}, "only 0 and 1"),
        ({"x": np.zeros((4, 3, 3)), "y": np.arange(4) % 2, "train": np.ones(4, bool)}, "at least one"),
        ({"x": np.zeros((4, 3, 3)), "y": np.arange(4) % 2, "train": np.ones(3, bool)}, "length N=4"),
        ({"x": np.array(["a"] * 36).reshape(4, 3, 3), "y": np.arange(4) % 2}, "real numbers"),
    ],
)
def test_layout_errors(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_npz(_save(tmp_path / "bad.npz", **arrays))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_npz(tmp_path / "nope.npz")


def test_per_channel_mask_kept() -> None:
    m = np.ones((3, 2, 4, 4), bool)
    m[0, 1, 0, 0] = False
    data = CompareData(np.zeros((3, 2, 4, 4)), m, np.array([0, 1, 0]), np.array([True, True, False]))
    assert data.mask.shape == (3, 2, 4, 4) and not data.mask[0, 1, 0, 0] and data.mask[0, 0, 0, 0]
