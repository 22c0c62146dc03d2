from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from masknn.__main__ import main
from masknn.compare import CompareData, compare, simulate_masks


def _digits_like(n: int = 48, seed: int = 0) -> CompareData:
    """Two classes: a bright square top-left or bottom-right."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(0, 0.1, (n, 1, 12, 12)).astype(np.float32)
    x[y == 0, :, 1:6, 1:6] += 1.0
    x[y == 1, :, 6:11, 6:11] += 1.0
    return CompareData(x, None, y, np.arange(n) < 36, name="toy")


def test_compare_records_and_table() -> None:
    res = compare(_digits_like(), "zero,partial+mc", rates=[0.2, 0.5], seeds=2, steps=3, progress=False)
    assert len(res.records) == 2 * 2 * 2
    assert {r["strategy"] for r in res.records} == {"zero", "partial+mc"}
    assert all(0.0 <= r["value"] <= 100.0 for r in res.records)
    table = res.table()
    assert "cloud 20%" in table and "cloud 50%" in table and "| partial+mc |" in table
    summary = res.summary()
    assert summary[("zero", "cloud", 0.2)][2] == 2


def test_compare_is_reproducible() -> None:
    kw = {"rates": [0.3], "seeds": [5], "steps": 4, "progress": False}
    a = compare(_digits_like(), "mean+mc,partial", **kw)
    b = compare(_digits_like(), "mean+mc,partial", **kw)
    assert [r["value"] for r in a.records] == [r["value"] for r in b.records]


def test_own_mask_is_used_when_data_has_missing_values() -> None:
    data = _digits_like()
    data.mask[:, :, :4] = False
    res = compare(data, "zero", seeds=1, steps=2, progress=False)
    assert [(r["mask_kind"], r["rate"]) for r in res.records] == [("data", None)]
    assert "own mask" in res.table()


def test_regression_scores_hidden_pixels_in_data_units() -> None:
    rng = np.random.default_rng(0)
    field = (20.0 + rng.normal(0, 1, (24, 1, 10, 10))).astype(np.float32)  # H, W not multiples of 4
    data = CompareData(field, None, field, np.arange(24) < 18, name="field")
    assert data.kind == "regress"
    res = compare(data, "zero,partial", rates=[0.4], seeds=1, steps=2, progress=False, width=4)
    for r in res.records:
        # an untrained net predicts ~0 while the data sits near 20: RMSE in data units, not scaled ones
        assert 5.0 < r["value"] < 40.0 and math.isfinite(r["value"])


def test_simulated_masks_cover_the_rate() -> None:
    m = simulate_masks("cloud", (3, 1, 16, 16), 0.5, seed=1)
    assert m.dtype == bool and abs(1 - m.mean() - 0.5) < 0.01
    with pytest.raises(ValueError, match="kind"):
        simulate_masks("fog", (1, 1, 4, 4), 0.5, seed=0)


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="rates"):
        compare(_digits_like(), "zero", rates=[1.2], progress=False)
    with pytest.raises(ValueError, match="mask kind"):
        compare(_digits_like(), "zero", rates=[0.2], mask_kinds=["fog"], progress=False)
    with pytest.raises(ValueError, match="seed"):
        compare(_digits_like(), "zero", rates=[0.2], seeds=[], progress=False)


def test_cli_compare_on_users_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    d = _digits_like()
    x = d.x.copy()
    x[:, :, 0, :] = np.nan  # the user's own missing values
    np.savez(tmp_path / "mine.npz", x=x, y=d.y, train=d.train)
    out = tmp_path / "out"
    code = main(
        [
            "compare",
            str(tmp_path / "mine.npz"),
            "--strategies",
            "zero,partial",
            "--seeds",
            "1",
            "--steps",
            "2",
            "--rates",
            "30",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| zero |" in text and "cloud 30%" in text
    assert (out / "mine.md").is_file() and (out / "mine.png").stat().st_size > 1000


def test_cli_compare_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3, 3)))
    assert main(["compare", str(tmp_path / "bad.npz")]) == 2
    assert "no array 'y'" in capsys.readouterr().err
    assert main(["compare", "--layout"]) == 0
    assert "numpy.savez" in capsys.readouterr().out
    assert main(["compare"]) == 2
