"""Convert Sphinx roles in masknn's sources to mkdocstrings cross-references.

mkdocstrings renders docstrings as Markdown, where a Sphinx role such as
``:class:`masknn.Masked``` is literal text. This script rewrites every role under
``src/masknn`` (docstrings and ``#:`` comments alike):

* a role naming a documented public object becomes an autorefs cross-reference to its
  one public path (``[`masknn.Masked`][]``, or ``[`Masked`][masknn.Masked]`` for a short
  or relative name), which ``mkdocs build --strict`` checks: a reference that does not
  resolve fails the build. The documented modules are read from the API pages
  (``docs/api/*.md`` in mkdocs.yml's nav), so a page added by a merge is picked up;
* a role naming something the API reference does not document (a private module or
  function, torch, numpy, the standard library) becomes inline code (````torch.nn.Linear````):
  there is no page to link to offline.

It splits a Google-style ``Args:`` entry that names several parameters (``a, b: as in
torch``) into one entry per parameter: griffe reads it as one parameter named ``"a, b"``
and warns, which fails the strict build. And it renames a Google-style ``Example:``
section header that introduces doctest lines (``>>>``) to ``Examples:``: griffe parses
only ``Examples:`` as examples (rendered as code); under ``Example:`` the ``>>>`` lines
render as nested Markdown block quotes, and a doctest output such as ``['a', 'b']``
after a ``[...]`` line is read as a cross-reference.

A role's target may be absolute (``masknn.functional.masked_add``), relative to the
module or to the enclosing class (``from_lengths`` inside ``Masked``), or to a parent
package; ``~`` shows the last component only, as in Sphinx.

Re-runnable and idempotent: run it again after merging branches that add roles.

    python scripts/convert_roles.py           # rewrite in place, print what became what
    python scripts/convert_roles.py --check   # exit 1 if anything is left to convert (no rewrite)

It imports masknn (to know the public names), so run it with the project's environment.
It exits with status 2 when a role names a ``masknn`` object that is neither documented
nor private: fix the role by hand (it is probably a typo or a renamed object).
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "masknn"


#: ``Example:`` alone on its line, followed (after blank lines) by a deeper-indented ``>>>``.
EXAMPLE_HEADER = re.compile(
    r"^(?P<indent>[ \t]*)Example:[ \t]*\n(?=(?:[ \t]*\n)*(?P=indent)[ \t]+>>> )", re.M
)

#: A Google-style section that lists parameters, one ``name: description`` entry each.
ARGS_SECTION = re.compile(
    r"^(?P<indent>[ \t]*)(?:Args|Arguments|Parameters|Params|Attributes|Keyword Args|"
    r"Keyword Arguments|Other Parameters):[ \t]*$"
)
#: An entry naming several parameters at once: ``a, b, c: as in torch``.
SHARED_ENTRY = re.compile(
    r"^(?P<indent>[ \t]+)(?P<names>\**\w+(?:,[ \t]*\**\w+)+)(?P<type>[ \t]*\([^)]*\))?:(?P<rest>.*)$"
)

ROLE = re.compile(r":(?:py:)?(?P<kind>class|func|meth|mod|data|attr|exc|obj|const):`(?P<target>[^`]+)`")


def _api_directives() -> list[str]:
    """The targets of the ``::: target`` directives of the API pages (``docs/api/*.md`` in
    mkdocs.yml's nav order), in order."""
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = re.findall(r"^\s*-\s*[^:\n]*:\s*(api/[\w./-]+\.md)\s*$", nav, re.M)
    targets: list[str] = []
    for page in pages:
        path = ROOT / "docs" / page
        if path.is_file():
            targets += re.findall(r"^:::\s*([\w.]+)\s*$", path.read_text(), re.M)
    return targets


@functools.cache
def documented_modules() -> tuple[str, ...]:
    """The modules whose public names (``__all__``) the API reference documents: ``masknn``,
    then every module named by a ``::: module`` directive of the API pages, in the order of
    mkdocs.yml's nav (the order decides an object's public path when several modules
    export it). A page added with a new module (e.g. after a merge) is picked up as it is."""
    found = ["masknn"]
    for target in _api_directives():
        if target not in found and _is_module(target):
            found.append(target)
    return tuple(found)


def _object(path: str) -> object:
    """The object at a dotted ``path`` (a module prefix, then attributes), or ``_MISSING``."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _where(obj: object) -> str | None:
    """``module.qualname`` where ``obj`` is defined, if it has them."""
    defined = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    return f"{defined}.{qual}" if isinstance(defined, str) and isinstance(qual, str) else None


def public_paths() -> dict[str, str]:
    """Every dotted path that names a documented object (its defining path, each public
    alias, its public members) -> the one path the API reference documents it under.

    Objects that a page documents one by one (``::: masknn.functional.fill.fill``) keep
    that path; the names of a module documented whole (``::: masknn.nn``) get
    ``module.name``."""
    paths: dict[str, str] = {}

    def add(path: str, canonical: str) -> None:
        paths.setdefault(path, canonical)

    def add_object(obj: object, canonical: str) -> None:
        add(canonical, canonical)
        where = _where(obj)
        if where is not None:
            add(where, canonical)
        if inspect.isclass(obj):
            for attr in vars(obj):
                if not attr.startswith("_"):
                    add(f"{canonical}.{attr}", f"{canonical}.{attr}")
                    if where is not None:
                        add(f"{where}.{attr}", f"{canonical}.{attr}")

    for target in _api_directives():  # objects documented one by one, under their path
        obj = _object(target)
        if obj is not _MISSING and not inspect.ismodule(obj):
            add_object(obj, target)
    for modname in documented_modules():
        mod = importlib.import_module(modname)
        add(modname, modname)
        for name in getattr(mod, "__all__", ()):
            if name.startswith("_"):
                continue
            obj = getattr(mod, name)
            if inspect.ismodule(obj):
                paths[obj.__name__] = obj.__name__
                continue
            where = _where(obj) if (inspect.isclass(obj) or callable(obj)) else None
            if where is not None and where in paths:  # documented one by one, or earlier
                add(f"{modname}.{name}", paths[where])
                continue
            canonical = f"{modname}.{name}"
            if where is None:  # data: every module of the package that holds the same object
                for sub_name, sub in list(sys.modules.items()):
                    if sub_name.startswith(modname + ".") and getattr(sub, name, None) is obj:
                        add(f"{sub_name}.{name}", canonical)
            add_object(obj, canonical)
    return paths


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def enclosing_classes(tree: ast.Module) -> list[tuple[int, int, str]]:
    """(first line, last line, dotted class name) of every class, outermost first."""
    out: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                out.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, prefix)

    visit(tree, "")
    return out


def resolve(target: str, module: str, scope: str | None, paths: dict[str, str]) -> str | None:
    """The documented public path of ``target`` seen from ``module`` (inside class ``scope``)."""
    target = target.lstrip(".")
    candidates = [target]
    if scope:
        candidates.append(f"{module}.{scope}.{target}")
    parts = module.split(".")
    candidates += [".".join(parts[:i] + [target]) for i in range(len(parts), 0, -1)]
    candidates += [f"{m}.{target}" for m in documented_modules()]
    for c in candidates:
        if c in paths:
            return paths[c]
    return None


def convert_file(path: Path, paths: dict[str, str], log: list[str], errors: list[str]) -> str | None:
    original = path.read_text()
    text = original
    for m in EXAMPLE_HEADER.finditer(original):
        line = original.count("\n", 0, m.start()) + 1
        log.append(f"{path.relative_to(ROOT)}:{line}: Example: -> Examples:")
    text = EXAMPLE_HEADER.sub(lambda m: f"{m.group('indent')}Examples:\n", text)
    text = _split_shared_entries(text, path, log)
    if not ROLE.search(text):
        return text if text != original else None
    module = module_name(path)
    classes = enclosing_classes(ast.parse(text))
    line_starts = [0]
    for line in text.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))

    def line_of(offset: int) -> int:
        lo, hi = 0, len(line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def replace(match: re.Match[str]) -> str:
        raw = match.group("target").strip()
        short = raw.startswith("~")
        target = raw.lstrip("~").strip()
        line = line_of(match.start())
        scope = None
        for first, last, name in classes:
            if first <= line <= last:
                scope = name  # the innermost wins: classes are listed outermost first
        shown = target.rsplit(".", 1)[-1] if short else target
        where = f"{path.relative_to(ROOT)}:{line}"
        resolved = resolve(target, module, scope, paths)
        if resolved is not None:
            link = f"[`{shown}`][]" if shown == resolved else f"[`{shown}`][{resolved}]"
            log.append(f"{where}: {match.group(0)} -> {link}")
            return link
        head = target.split(".", 1)[0]
        if head == "masknn":
            private = any(p.startswith("_") for p in target.split("."))
            if not private and not _is_module(target):
                errors.append(f"{where}: {match.group(0)}: no documented masknn object of that name")
                return match.group(0)
            why = "private" if private else "submodule"
        elif (found := _lookup(module, scope, target)) is not _MISSING:
            # A helper of this module that the API reference does not document, or an
            # object this module imported from elsewhere (torch).
            owner = getattr(found, "__module__", None) or getattr(found, "__name__", "")
            why = "private" if str(owner).startswith("masknn") else "external"
        elif _is_module(head):
            why = "external"
        else:
            errors.append(f"{where}: {match.group(0)}: not found from {module}")
            return match.group(0)
        log.append(f"{where}: {match.group(0)} -> ``{shown}`` ({why})")
        return f"``{shown}``"

    new = ROLE.sub(replace, text)
    new = "\n".join(_wrap(line) for line in new.split("\n"))
    return new if new != original else None


def _split_shared_entries(text: str, path: Path, log: list[str]) -> str:
    """One entry per parameter: griffe reads ``a, b: description`` in an ``Args:`` section as
    one parameter named ``"a, b"`` and warns (which fails ``mkdocs build --strict``). Each
    name gets the entry's description (its continuation lines too)."""
    lines = text.split("\n")
    out: list[str] = []
    section: int | None = None  # the indentation of the current Args-like header
    i = 0
    while i < len(lines):
        line = lines[i]
        width = len(line) - len(line.lstrip())
        if line.strip() and section is not None and width <= section:
            section = None
        header = ARGS_SECTION.match(line)
        if header:
            section = len(header.group("indent"))
            out.append(line)
            i += 1
            continue
        entry = SHARED_ENTRY.match(line) if section is not None else None
        if entry is None or len(entry.group("indent")) <= section:  # type: ignore[operator]
            out.append(line)
            i += 1
            continue
        block = [line]  # the entry and its continuation lines (indented deeper)
        j = i + 1
        while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) > width:
            block.append(lines[j])
            j += 1
        names = [n.strip() for n in entry.group("names").split(",")]
        for name in names:
            first = f"{entry.group('indent')}{name}{entry.group('type') or ''}:{entry.group('rest')}"
            out += [first, *block[1:]]
        log.append(f"{path.relative_to(ROOT)}:{i + 1}: {entry.group('names')}: -> one entry per parameter")
        i = j
    return "\n".join(out)


#: The line length of ``ruff format`` (pyproject.toml); a line a link made longer is wrapped.
LINE_LENGTH = 110
_LINK = re.compile(r"\[`[^`]+`\]\[[\w.]*\]")
_ITEM = re.compile(r"^\s*(?:[*-] |\**[\w.]+(?: \([^)]*\))?: \S)")


def _wrap(line: str) -> str:
    """Break a line holding a cross-reference at the last space that fits, outside code
    spans; continuation lines keep a ``#:`` comment prefix and indent under a list or
    Google-style section item (Markdown reads them as the same paragraph)."""
    if len(line) <= LINE_LENGTH or not _LINK.search(line):
        return line
    indent = line[: len(line) - len(line.lstrip())]
    body = line.lstrip()
    if body.startswith("#:"):
        prefix = indent + "#: "
    elif body.startswith('"""') or body.startswith('r"""'):
        prefix = indent
    elif _ITEM.match(line):
        prefix = indent + ("  " if body[:2] in ("* ", "- ") else "    ")
    else:
        prefix = indent
    out: list[str] = []
    rest = line
    while len(rest) > LINE_LENGTH:
        spaces = [i for i in _breakable_spaces(rest) if len(prefix) < i <= LINE_LENGTH]
        if not spaces:
            break
        cut = spaces[-1]
        out.append(rest[:cut].rstrip())
        rest = prefix + rest[cut:].lstrip()
    out.append(rest)
    return "\n".join(out)


def _breakable_spaces(line: str) -> list[int]:
    """Positions of spaces outside code spans (a run of n backticks up to the next run of
    n) and past the indentation."""
    spaces: list[int] = []
    start = len(line) - len(line.lstrip())
    i, opened = start, 0
    while i < len(line):
        if line[i] == "`":
            j = i
            while j < len(line) and line[j] == "`":
                j += 1
            run = j - i
            opened = 0 if opened == run else (run if not opened else opened)
            i = j
            continue
        if line[i] == " " and not opened and i > start:
            spaces.append(i)
        i += 1
    return spaces


def _lookup(module: str, scope: str | None, target: str) -> object:
    """What ``target`` names in ``module`` (or in its class ``scope``), else ``_MISSING``."""
    try:
        obj: object = importlib.import_module(module)
    except ImportError:
        return _MISSING
    bases = [obj]
    if scope:
        for part in scope.split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            bases.insert(0, obj)
    for base in bases:
        found: object = base
        for part in target.split("."):
            found = getattr(found, part, _MISSING)
            if found is _MISSING:
                break
        if found is not _MISSING:
            return found
    return _MISSING


_MISSING = object()


def _is_module(path: str) -> bool:
    """A masknn submodule that the API reference documents through its package
    (``masknn.functional.losses``): shown as code."""
    try:
        return importlib.util.find_spec(path) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report roles left; rewrite nothing")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary and errors")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(SRC.parent))
    paths = public_paths()
    log: list[str] = []
    errors: list[str] = []
    changed: list[Path] = []
    for path in sorted(SRC.rglob("*.py")):
        new = convert_file(path, paths, log, errors)
        if new is not None:
            changed.append(path)
            if not args.check:
                path.write_text(new)
    if not args.quiet:
        print("\n".join(log))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    verb = "to make" if args.check else "made"
    print(f"{len(log)} change(s) in {len(changed)} file(s) {verb}")
    if errors:
        return 2
    return 1 if args.check and log else 0


if __name__ == "__main__":
    sys.exit(main())
