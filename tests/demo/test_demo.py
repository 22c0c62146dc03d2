"""Smoke runs of ``masknn demo --quick`` (each well under 30 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from masknn.__main__ import main
from masknn.demo import run_task


def test_python_m_masknn_demo_quick(tmp_path: Path) -> None:
    pytest.importorskip("mlxtend")
    pytest.importorskip("matplotlib")
    out = tmp_path / "figs"
    proc = subprocess.run(
        [sys.executable, "-m", "masknn", "demo", "--quick", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("zero", "mean", "zero+mc", "mean+mc", "partial", "partial+mc"):
        assert f"| {name} |" in proc.stdout
    assert (out / "classify_accuracy.png").stat().st_size > 1000
    assert (out / "mask_growth.png").stat().st_size > 1000
    assert "accuracy" in (out / "classify.md").read_text()


def test_gapfill_quick(tmp_path: Path) -> None:
    pytest.importorskip("cartopy")
    pytest.importorskip("scipy")
    pytest.importorskip("matplotlib")
    table = run_task("gapfill", "quick", tmp_path, progress=False, log=lambda s: None)
    for row in ("interp. linear", "interp. nearest", "patch mean", "interp.+residual U-Net", "partial+mc"):
        assert f"| {row} |" in table
    assert (tmp_path / "gapfill_panels.png").stat().st_size > 1000
    assert (tmp_path / "gapfill_rmse.png").stat().st_size > 1000


def test_sequences_quick(tmp_path: Path) -> None:
    pytest.importorskip("sktime")
    table = run_task("sequences", "quick", tmp_path, progress=False, log=lambda s: None)
    assert "| MaskedLSTM + mean pool |" in table and "JapaneseVowels" in table


def test_demo_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "nosuchtask"])
    with pytest.raises(SystemExit):
        main(["demo", "--quick", "--full"])
    with pytest.raises(ValueError, match="unknown task"):
        run_task("nosuchtask")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip()


def test_gapfill_panels_show_units_land_and_clouds() -> None:
    pytest.importorskip("matplotlib")
    import numpy as np
    from matplotlib.colors import to_rgba

    from masknn.demo.figures import CLOUD, LAND, _gapfill_figure, _plt

    rng = np.random.default_rng(0)
    truth = (20 + rng.normal(0, 1, (12, 12))).astype(np.float32)
    ocean = np.ones((12, 12), dtype=bool)
    ocean[:4, :5] = False  # land
    seen = ocean & (rng.random((12, 12)) > 0.4)
    recons = [
        ("interp. linear", truth + 0.1),
        ("interp.+residual U-Net", truth - 0.2),
        ("U-Net zero", truth + 1),
    ]
    plt = _plt()
    fig = _gapfill_figure(plt, np.where(ocean, truth, np.nan), ocean, seen, recons, "t")
    try:
        axes = np.array(fig.axes[:-2]).reshape(3, -1)  # the last two axes are the colour bars
        # Colour bars with units.
        labels = [ax.get_ylabel() for ax in fig.axes[-2:]]
        assert labels == ["sea-surface temperature (°C)", "prediction − truth (°C)"]
        # Input: cloud-hidden ocean is NaN drawn in the cloud colour; land is a separate layer
        # in the land colour over exactly the land pixels; the two colours differ.
        field, land = axes[0, 1].get_images()
        hidden = ocean & ~seen
        assert np.isnan(np.ma.filled(field.get_array(), np.nan)[hidden]).all()
        assert to_rgba(field.get_cmap().get_bad()) == to_rgba(CLOUD)
        assert np.array_equal(np.ma.getmaskarray(land.get_array()), ocean)
        assert to_rgba(land.get_cmap()(0.0)) == to_rgba(LAND) != to_rgba(CLOUD)
        # One reconstruction and one error panel per method, the residual net among them.
        assert [ax.get_title() for ax in axes[1]] == [name for name, _ in recons]
        assert axes[2, 1].get_title().startswith("error, RMSE 0.20 °C")
    finally:
        plt.close(fig)
