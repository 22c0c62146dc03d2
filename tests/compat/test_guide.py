"""Every Python example of docs/guide/compile-export-deploy.md runs, each on its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.compat

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "compile-export-deploy.md"


def _examples() -> list[tuple[str, str]]:
    """(heading slug, code) of each ```python block, in page order."""
    examples: list[tuple[str, str]] = []
    heading = "top"
    text = GUIDE.read_text(encoding="utf-8")
    for match in re.finditer(r"^## ([^\n]+)$|^```python\n(.*?)^```$", text, re.M | re.S):
        if match.group(1) is not None:
            heading = re.sub(r"[^a-z0-9]+", "-", match.group(1).lower()).strip("-")
        else:
            examples.append((heading, match.group(2)))
    return examples


EXAMPLES = _examples()


def test_the_guide_has_an_example_of_each_capability() -> None:
    headings = [h for h, _ in EXAMPLES]
    for word in ("compile", "export", "onnx", "func", "double-backward", "autocast", "channels-last"):
        assert any(word in h for h in headings), f"no example under a heading about {word}: {headings}"


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(code, id=heading, marks=[pytest.mark.compile] if "compile" in heading else [])
        for heading, code in EXAMPLES
    ],
)
def test_example_runs(code: str) -> None:
    if "import onnxruntime" in code:
        reason = "the ONNX example needs the test extra (onnx, onnxscript, onnxruntime)"
        pytest.importorskip("onnxscript", reason=reason)
        pytest.importorskip("onnxruntime", reason=reason)
    exec(compile(code, str(GUIDE), "exec"), {"__name__": "__guide__"})
