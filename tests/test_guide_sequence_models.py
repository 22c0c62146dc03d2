"""The ```python blocks of docs/guide/sequence-models.md run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "sequence-models.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def test_page_has_code_blocks() -> None:
    assert len(BLOCK.findall(PAGE.read_text())) >= 8


def test_code_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "guide"}
    for i, code in enumerate(BLOCK.findall(PAGE.read_text())):
        exec(compile(code, f"{PAGE.name}, python block {i}", "exec"), namespace)
    out = capsys.readouterr().out
    for line in ("seed 000, Masking + LSTM + Dense", "seed 004, pre-masking", "embedding + transformer"):
        assert line in out
    accuracy = float(re.findall(r"accuracy on fresh batches: ([0-9.]+)", out)[0])
    assert accuracy > 0.65  # above the majority class (62 % of the labels are 0); 0.78 here
