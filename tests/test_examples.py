"""Every script in examples/ runs (each in seconds)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

# Run with fewer steps and a learning assertion in tests/test_examples_cnn.py.
COVERED_ELSEWHERE = {"masked_cnn_classifier", "partial_conv_unet"}
EXAMPLES = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.py")
    if p.stem not in COVERED_ELSEWHERE
)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", [str(path)])
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip(), f"{path.name} printed nothing"
