"""The documentation: docstrings use mkdocstrings cross-references (no Sphinx roles), the API
reference documents every public name once under its public path, and ``mkdocs build
--strict`` fails on a cross-reference that does not resolve."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import shutil
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT


def _convert_roles() -> ModuleType:
    spec = importlib.util.spec_from_file_location("convert_roles", ROOT / "scripts" / "convert_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_sphinx_role_left_in_the_sources(capsys: pytest.CaptureFixture[str]) -> None:
    # scripts/convert_roles.py converts them; --check exits 1 while any is left.
    status = _convert_roles().main(["--check", "-q"])
    out = capsys.readouterr()
    assert status == 0, out.out + out.err


def test_the_converter_resolves_and_falls_back(tmp_path: Path) -> None:
    conv = _convert_roles()
    paths = conv.public_paths()  # reads (and caches) the documented modules from mkdocs.yml
    assert conv.documented_modules()[:3] == ("masknn", "masknn.nn", "masknn.functional")
    # Defining paths, aliases and members map to the one public path.
    assert paths["masknn.nn.conv.PartialConv2d"] == "masknn.nn.PartialConv2d"
    assert paths["masknn._masked.Masked.from_lengths"] == "masknn.Masked.from_lengths"
    assert paths["masknn.compare.models.UNet"] == "masknn.compare.UNet"
    assert conv.resolve("from_lengths", "masknn._masked", "Masked", paths) == "masknn.Masked.from_lengths"
    assert conv.resolve("masked_add", "masknn.functional.combine", None, paths) == (
        "masknn.functional.masked_add"
    )
    # A role in a file: links, code for what has no page, Examples: header, idempotent.
    src = tmp_path / "src" / "masknn"
    src.mkdir(parents=True)
    f = src / "probe.py"
    f.write_text(
        '"""See :class:`~masknn.nn.PartialConv2d`, :func:`torch.nn.functional.conv2d` and\n'
        ':mod:`masknn._masked`.\n\nExample:\n    >>> 1\n    1\n"""\n'
    )
    log: list[str] = []
    errors: list[str] = []
    conv.SRC, conv.ROOT = src, tmp_path
    new = conv.convert_file(f, paths, log, errors)
    assert not errors
    assert new == (
        '"""See [`PartialConv2d`][masknn.nn.PartialConv2d], ``torch.nn.functional.conv2d`` and\n'
        '``masknn._masked``.\n\nExamples:\n    >>> 1\n    1\n"""\n'
    )
    f.write_text(new)
    assert conv.convert_file(f, paths, log, errors) is None
    # An Args entry naming several parameters: one entry each (continuation lines too).
    f.write_text(
        'def g(a, b, c):\n    """G.\n\n    Args:\n        a, b: as in torch,\n            really.\n'
        '        c: the last.\n\n    Returns:\n        x, y: not an Args entry.\n    """\n'
    )
    assert conv.convert_file(f, paths, log, errors) == (
        'def g(a, b, c):\n    """G.\n\n    Args:\n        a: as in torch,\n            really.\n'
        "        b: as in torch,\n            really.\n        c: the last.\n\n    Returns:\n"
        '        x, y: not an Args entry.\n    """\n'
    )
    # A masknn name that is neither documented nor private is an error, left as it is.
    f.write_text('""":func:`masknn.functional.no_such_op`"""\n')
    assert conv.convert_file(f, paths, [], errors) is None
    assert errors and "no_such_op" in errors[-1]


# ------------------------------------------------------------------------------- the build


def _build(tmp_path: Path, docs_dir: Path | None = None) -> Path:
    pytest.importorskip("mkdocs", reason="building the docs needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the API reference needs the docs extra")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    site = tmp_path / "site"
    kwargs = {"docs_dir": str(docs_dir)} if docs_dir is not None else {}
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(site), strict=True, **kwargs)
    build(config)
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("docs"))


def _headings(site: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for page in (site / "api").glob("*/index.html"):
        ids.update(re.findall(r'<h\d id="(masknn[^"]*)" class="doc doc-heading"', page.read_text()))
    return ids


def test_every_public_name_is_documented_once_under_its_public_path(site: Path) -> None:
    conv = _convert_roles()
    paths = conv.public_paths()
    ids = _headings(site)
    assert ids, "no API heading found: did the page layout change?"
    public: set[str] = set()
    documented = conv.documented_modules()
    for modname in documented:
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", ()):
            if name.startswith("_") or inspect.ismodule(getattr(mod, name)):
                continue
            public.add(paths[f"{modname}.{name}"])
    assert {p for p in public if ids[p] != 1} == set(), "public names not documented exactly once"
    public |= set(conv._api_directives())  # objects a page documents one by one (masknn.convert's)
    # Nothing is documented under a submodule path (masknn.nn.conv.PartialConv2d): every
    # heading is a documented module, a public name, or a member of a public class.
    stray = [i for i in ids if i not in documented and i not in public and i.rsplit(".", 1)[0] not in public]
    assert stray == []
    assert "masknn.nn.PartialConv2d" in ids and "masknn.nn.conv.PartialConv2d" not in ids


def test_no_role_renders_as_literal_text(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r":(class|func|meth|mod|data|attr|exc|obj):`", text), page
        # A doctest's >>> lines render as code, not as nested block quotes.
        assert "<blockquote>\n<blockquote>" not in text, page


def test_cross_references_link_to_the_api(site: Path) -> None:
    html = (site / "api" / "nn" / "index.html").read_text()
    # PartialConv1d's docstring refers to PartialConv2d: an autorefs link to its anchor.
    assert re.search(r'<a class="autorefs[^"]*" href="#masknn.nn.PartialConv2d"', html)


def test_a_broken_cross_reference_fails_the_build(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="building the docs needs the docs extra: pip install -e '.[docs]'")
    from mkdocs.exceptions import Abort

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    page = docs / "guide" / "mask-convention.md"
    page.write_text(page.read_text() + "\nSee [masknn.nn.NoSuchLayer][].\n")
    with pytest.raises(Abort, match="warnings in strict mode"):
        _build(tmp_path, docs)
