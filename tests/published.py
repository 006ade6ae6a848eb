"""Files that test tasks write for the test to read: published whole, never seen half-written.

A test waits until the file exists and then reads it; a plain ``write_text`` creates the file
before it writes the text, so the test could read "" (it did, once, on a loaded CI machine).
Writing a temporary file and renaming it over the path makes the file appear with its text.
"""

from __future__ import annotations

import os
from pathlib import Path


def publish(path: str | Path, text: str) -> None:
    """Make ``path`` hold ``text``, atomically: a reader sees no file or all of it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
