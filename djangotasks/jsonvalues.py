"""Task arguments and return values: JSON that every supported database stores unchanged.

Django's tasks framework asks that arguments and return values round-trip through JSON. A
value that would silently change on the way (a ``datetime``, a ``set``, a dict with integer
keys, ``NaN``) or that a database refuses (PostgreSQL stores no NUL character in ``jsonb``,
no driver encodes a lone surrogate) is refused here with the path of the offending value, at
``enqueue()`` for arguments and as the task's error for a return value, never later in the
daemon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from djangotasks.exceptions import NotJSON

# Deeper than any real argument, and far below Python's recursion limit.
MAX_DEPTH = 200
_SHOWN = 80


def _show(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _refuse(what: str, path: str, value: object, why: str) -> NotJSON:
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return NotJSON(
        f"{what} must round-trip through JSON: {path} is {_show(value)} ({kind}), {why}."
    )


def _check_text(what: str, path: str, text: str) -> None:
    if "\x00" in text:
        raise _refuse(what, path, text, "and a NUL character cannot be stored (PostgreSQL)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(what, path, text, "and a lone surrogate is not valid UTF-8") from None


def to_json(value: Any, what: str, path: str = "value") -> Any:
    """``value`` as plain JSON types (tuples become lists, as Django's own backends do), or
    ``NotJSON`` naming the first value that does not round-trip.

    ``what`` names the whole ("Task arguments"), ``path`` the value within it ("args[0]").
    """
    return _convert(value, what, path, 0)


def _convert(value: Any, what: str, path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _refuse(what, path, value, f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or a bool-like subclass is stored as its number
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(what, path, value, "and JSON has no NaN or infinity")
        return float(value)
    if isinstance(value, str):
        _check_text(what, path, value)
        return str(value)
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _refuse(
                    what, f"{path} key {_show(key)}", key, "and JSON object keys are strings"
                )
            _check_text(what, f"{path} key", key)
            result[str(key)] = _convert(item, what, f"{path}[{key!r}]", depth + 1)
        return result
    if isinstance(value, list | tuple):
        return [_convert(item, what, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, bytes | bytearray):
        why = "and bytes are not JSON (decode them, or use base64)"
    elif isinstance(value, Sequence):
        why = "not a list or tuple"
    else:
        why = "which JSON cannot represent (pass a str, number, bool, None, list or dict)"
    raise _refuse(what, path, value, why)
