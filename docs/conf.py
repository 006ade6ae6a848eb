"""Sphinx configuration of djangotasks' documentation (MyST Markdown, the Furo theme).

`make docs` builds it with warnings as errors, and runs its examples: every ``{doctest}``
block runs against the demo project (demo/), with a daemon of its own on a throwaway SQLite
database (docs/example_project.py), so what the pages show is what the code does.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(DOCS)]

project = "djangotasks"
author = "The djangotasks authors"
copyright = "djangotasks authors, BSD-3-Clause"
# The one version: djangotasks/__init__.py (the wheel reads it there too, through hatch).
release = re.search(
    r'^__version__ = "([^"]+)"', (ROOT / "djangotasks" / "__init__.py").read_text(), re.M
).group(1)  # type: ignore[union-attr]
version = release

extensions = ["myst_parser", "sphinx.ext.doctest"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links, as GitHub renders them
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = f"djangotasks {release}"
html_static_path: list[str] = []

# Every doctest block runs in the demo project with a daemon started once for the build.
doctest_global_setup = "from example_project import *  # noqa: F403"
doctest_default_flags = 0  # outputs compare exactly, blank lines and all (the defaults)
