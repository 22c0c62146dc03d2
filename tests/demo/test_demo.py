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
