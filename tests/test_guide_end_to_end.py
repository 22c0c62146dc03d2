"""The end-to-end guide (docs/guide/end-to-end.md) and the Examples page: the example they
show learns, and every script in examples/ is on the Examples page."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_multiband_example_learns_with_a_masked_loss(one_thread: None) -> None:
    spec = importlib.util.spec_from_file_location("multiband", EXAMPLES / "seed000_multiband_training.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(steps=80)
    baseline = results.pop("predict the mean")
    assert set(results) == {"fill + mask channel", "partial conv + mask channel"}
    for name, value in results.items():
        assert value < 0.7 * baseline, f"{name}: RMSE {value:.3f} vs {baseline:.3f} for the mean"


def _included(page: Path) -> set[str]:
    return set(re.findall(r'--8<-- "examples/([\w.]+\.py)(?::\w+)?"', page.read_text()))


def test_every_example_is_on_the_examples_page() -> None:
    page = ROOT / "docs" / "examples.md"
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert _included(page) == scripts
    listed = set(re.findall(r"^\| \[`([\w.]+\.py)`\]", page.read_text(), re.M))
    assert listed == scripts


def test_the_guide_shows_the_example_it_links() -> None:
    guide = (ROOT / "docs" / "guide" / "end-to-end.md").read_text()
    sections = re.findall(r'--8<-- "examples/seed000_multiband_training\.py:(\w+)"', guide)
    source = (EXAMPLES / "seed000_multiband_training.py").read_text()
    assert sections, "the guide includes no part of the example"
    for name in sections:
        assert f"--8<-- [start:{name}]" in source and f"--8<-- [end:{name}]" in source, name
    # The guide documents the shared mask and the flag the example needs.
    assert "share_mask(1)" in guide and "fully_masked_zero=False" in guide


def test_the_checker_pages_fully_masked_zero_block_runs_as_shown() -> None:
    from masknn.testing import LeakageError

    page = (ROOT / "docs" / "guide" / "leakage-checker.md").read_text()
    section = page.split("`fully_masked_zero=False`", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    shown = re.search(r"```text\nLeakageError: (.*?)\n```", section, re.S)
    assert code is not None and shown is not None
    torch.manual_seed(0)
    # Every line but the last passes; the last raises the error the page shows.
    with pytest.raises(LeakageError) as err:
        exec(compile(code.group(1), "leakage-checker.md", "exec"), {})
    assert str(err.value) == shown.group(1)
