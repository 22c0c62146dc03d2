"""The code of the guide page "Bring your own model" runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torchvision")
pytest.importorskip("segmentation_models_pytorch")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "bring-your-own-model.md"


def test_guide_code_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {"__name__": "guide"}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
    from masknn.convert import registry

    assert not registry._MODULES, "the guide's registrations are undone at its end"
