"""``JsonFormatter``: one JSON object per log line, for the tools that read the daemon's logs.

``manage.py taskd run --log-format json`` uses it; a project that configures logging itself
names it in ``LOGGING``::

    "formatters": {"json": {"()": "djangotasks.logformat.JsonFormatter"}}
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

# The attributes every LogRecord has (and those formatting adds): the rest came through
# ``extra=`` and is written as fields of their own.
STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Each record as one line of JSON: ``time`` (ISO 8601, UTC, milliseconds), ``level``,
    ``logger``, ``message``, every field given through ``extra=`` (djangotasks' are in
    ``djangotasks.logfields``), and ``traceback`` when there is one.

    Never raises on what a record holds: a value JSON has no type for is written as its
    ``str()``, and the output is ASCII with every control character escaped, so a NUL, a
    newline or a lone surrogate in a message (or a task's name) stays inside its line.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, tz=UTC)
        document: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        for key, value in vars(record).items():
            if key not in STANDARD_ATTRIBUTES and key not in document:
                document[key] = value
        if record.exc_info:
            if not record.exc_text:  # cached on the record, as logging.Formatter does
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["traceback"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(document, default=_text, ensure_ascii=True, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            # Keys JSON has no place for, NaN, a value that contains itself: such a field
            # is written as its text (the others stay as they are).
            plain = {key: _plain(value) for key, value in document.items()}
            return json.dumps(plain, ensure_ascii=True)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        # A format that does not match its arguments (or an argument whose str() raises):
        # the line is still written, with what there is.
        return f"{_text(record.msg)} % {_text(record.args)}"


def _plain(value: object) -> object:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _text(value)


def _text(value: object) -> str:
    """``str(value)``, or at worst its type: a field never stops its line being written."""
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"
