"""Making values that come from task code storable, and saying what had to change.

A task's exception text, progress and control messages are written to the database by the
daemon. PostgreSQL rejects NUL in text, no driver can encode a lone surrogate (which
``json.loads`` happily produces from ``"\\ud800"``), and a Python ``int`` can be far wider
than a 64-bit column. Any of them, stored as is, would fail the daemon's write; cleaned here,
they cost the task a note in its log instead.
"""

from __future__ import annotations

import math

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
NUL = "\x00"
REPLACEMENT = "\ufffd"


def storable_text(text: str) -> str:
    """``text`` without NUL and lone surrogates, each replaced by U+FFFD."""
    if NUL in text:
        text = text.replace(NUL, REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 round trip: a valid surrogate pair becomes its character, a lone one U+FFFD.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def clean_text(value: object, max_length: int, what: str) -> tuple[str, str | None]:
    """``value`` as storable text of at most ``max_length`` characters, and a note of what
    had to change (None if nothing did)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except Exception:  # a task's object can make str() raise anything
            text = f"<{type(value).__name__} that cannot be shown>"
    problems = []
    cleaned = storable_text(text)
    if cleaned != text:
        problems.append("contained NUL or invalid characters (replaced by U+FFFD)")
    if len(cleaned) > max_length:
        problems.append(f"was {len(cleaned):,} characters long (cut to {max_length:,})")
        cleaned = cleaned[: max_length - 1] + "…"
    return cleaned, f"{what} {' and '.join(problems)}" if problems else None


def clean_bigint(value: object, what: str) -> tuple[int | None, str | None]:
    """``value`` as an integer a 64-bit column can hold (None if it is no number at all)."""
    if value is None:
        return None, None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, f"{what} was {value!r}, not a number (left empty)"
        value = int(value)
    if not isinstance(value, int):  # bool is an int: True counts as 1
        return None, f"{what} was a {type(value).__name__}, not a number (left empty)"
    if value > BIGINT_MAX or value < BIGINT_MIN:
        clamped = BIGINT_MAX if value > 0 else BIGINT_MIN
        # No str(value): a huge int cannot even be turned into text (sys.int_info limits).
        return clamped, f"{what} was out of range, over 64 bits (stored as {clamped:,})"
    return value, None
