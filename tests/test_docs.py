"""The documentation says what the code does: its examples compile and import what exists, its
references (settings, checks, tests, links, images, the version) point at real things.

The interactive examples themselves run in `make docs` (Sphinx's doctest builder, in the demo
project with a daemon); these tests need no build and run with the suite.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import djangotasks
from djangotasks.conf import TaskSettings
from tests.helpers import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MARKDOWN = [ROOT / "README.md", ROOT / "CHANGELOG.md", *PAGES]
FENCE = re.compile(r"^(`{3,})(\S*)[^\n]*\n(.*?)^\1\s*$", re.M | re.S)


def code_blocks(path: Path, languages: set[str]) -> Iterator[tuple[int, str]]:
    """(line, code) of each fenced block of one of ``languages`` in a Markdown file."""
    text = path.read_text()
    for match in FENCE.finditer(text):
        language = match.group(2).strip("{}")
        if language in languages:
            yield text.count("\n", 0, match.start()) + 2, match.group(3)


def session_source(block: str) -> str:
    """The Python of an interactive session: its ``>>>`` and ``...`` lines, prompts removed."""
    lines = []
    for line in block.splitlines():
        if line.startswith((">>> ", "... ")) or line in (">>>", "..."):
            lines.append(line[4:])
    return "\n".join(lines)


def python_examples() -> Iterator[tuple[str, str]]:
    for path in MARKDOWN:
        for line, block in code_blocks(path, {"python", "pycon", "doctest"}):
            source = session_source(block) if ">>> " in block else block
            yield f"{path.relative_to(ROOT)}:{line}", source


EXAMPLES = list(python_examples())


def test_the_pages_have_python_examples():
    assert len(EXAMPLES) > 15
    assert {where.split(":")[0] for where, _source in EXAMPLES} >= {"README.md", "docs/tasks.md"}


@pytest.mark.parametrize(("where", "source"), EXAMPLES, ids=[w for w, _s in EXAMPLES])
def test_python_examples_compile_and_import_what_exists(where: str, source: str):
    tree = ast.parse(source, filename=where)  # a SyntaxError names the page and line
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("djangotasks"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert (
                    alias.name == "*"
                    or hasattr(module, alias.name)
                    or _is_module(f"{node.module}.{alias.name}")
                ), f"{where}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("djangotasks"):
                    importlib.import_module(alias.name)


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


# -- the settings and checks reference ----------------------------------------------------


def settings_page() -> str:
    return (DOCS / "settings.md").read_text()


# docs/settings.md gives each setting as "### `NAME`" followed by "Type: `...`. Default: `...`."
SETTING = re.compile(r"^### `([A-Z_]+)`\n\nType: `([^`]+)`\. Default: `([^`]+)`\.$", re.M)


def documented_settings() -> dict[str, tuple[str, str]]:
    return {name: (kind, default) for name, kind, default in SETTING.findall(settings_page())}


def test_the_settings_reference_has_every_setting_and_no_other():
    names = [field.name for field in dataclasses.fields(TaskSettings)]
    assert list(documented_settings()) == names  # all of them, in conf.py's order


@pytest.mark.parametrize("setting", dataclasses.fields(TaskSettings), ids=lambda f: f.name)
def test_every_setting_is_documented_with_its_type_and_default(setting: dataclasses.Field):
    kind, default = documented_settings()[setting.name]
    assert kind == setting.type, f"docs/settings.md: {setting.name} is a {setting.type}"
    assert _evaluates_to(default, setting.default), (
        f"docs/settings.md gives {setting.name}'s default as {default}, not {setting.default!r}"
    )


def _evaluates_to(text: str, value: object) -> bool:
    """True when ``text`` is a Python literal expression (``32 * 1024 * 1024``) for ``value``."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    allowed = (ast.Expression, ast.BinOp, ast.Constant, ast.Mult, ast.Pow, ast.UnaryOp, ast.USub)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)):
        return False
    result = eval(compile(tree, "<setting>", "eval"))  # only arithmetic on literals
    return type(result) is type(value) and result == value


def check_ids_in(text: str) -> set[str]:
    return set(re.findall(r"djangotasks\.[EW]\d{3}", text))


def test_every_system_check_is_documented_and_every_documented_one_exists():
    in_code = set()
    for path in (ROOT / "djangotasks").rglob("*.py"):
        in_code |= check_ids_in(path.read_text())
    documented = check_ids_in(settings_page())
    assert in_code, "no check ids found in the code"
    assert in_code - documented == set(), "checks missing from docs/settings.md"
    everywhere = set().union(*(check_ids_in(p.read_text()) for p in MARKDOWN))
    assert everywhere - in_code == set(), "the docs name checks that do not exist"


# -- guarantees name real tests ------------------------------------------------------------

TEST_REFERENCE = re.compile(r"`(test_\w+\.py)((?:::\w+)?)`((?:, `::\w+`)*)")


def test_every_test_the_guarantees_name_exists():
    page = (DOCS / "guarantees.md").read_text()
    named = 0
    for match in TEST_REFERENCE.finditer(page):
        path = ROOT / "tests" / match.group(1)
        assert path.exists(), f"docs/guarantees.md names {match.group(1)}, which does not exist"
        functions = {
            node.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef)
        }
        names = re.findall(r"::(\w+)", match.group(2) + match.group(3))
        for name in names:
            assert name in functions, f"docs/guarantees.md names {match.group(1)}::{name}"
            named += 1
    assert named > 50


# -- links, images, the version ---------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (and MyST's, with myst_heading_anchors)."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_resolve(page: Path):
    text = FENCE.sub("", page.read_text())
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        file, _hash, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading for {target}"


def test_every_image_the_docs_show_is_made_by_the_screenshot_script():
    script = (DOCS / "screenshots.py").read_text()
    shown = set()
    for page in MARKDOWN:
        shown |= {Path(t).name for t in LINK.findall(page.read_text()) if t.endswith(".png")}
    assert shown
    for name in shown:
        assert f'"{Path(name).stem}"' in script, f"{name} is not made by docs/screenshots.py"
        assert (DOCS / "images" / name).exists()


def test_one_version_named_by_the_changelog():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "djangotasks/__init__.py"
    releases = re.findall(r"^## (\d+\.\d+\.\d+)\b", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == djangotasks.__version__
