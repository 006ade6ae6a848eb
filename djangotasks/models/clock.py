"""The database server's clock: the one clock every daemon on every host agrees on.

Heartbeats are written and judged with it, never with a host's own clock: hosts' clocks
drift and jump (NTP steps, a VM resumed, a container with a fake time), and with
``USE_TZ = False`` a local time repeats or skips an hour at each DST change. The value is a
plain number, milliseconds since the Unix epoch in UTC, so no time zone (the session's, the
project's, the host's) can change what it means.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import NotSupportedError
from django.db.models import BigIntegerField, Func

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler

# SQL that reads the server's clock, in milliseconds since 1970-01-01 UTC, per vendor.
_SQL = {
    # julianday('now') is UTC, with millisecond precision; 2440587.5 is the Unix epoch.
    "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    # EXTRACT(EPOCH FROM timestamptz) is absolute: the session's TimeZone plays no part.
    "postgresql": "CAST(EXTRACT(EPOCH FROM CLOCK_TIMESTAMP()) * 1000 AS BIGINT)",
    # UTC_TIMESTAMP ignores the session's time_zone (NOW() and UNIX_TIMESTAMP(x) do not).
    "mysql": "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)",
}


class DatabaseClock(Func):
    """Now, by the database server's clock: milliseconds since the Unix epoch (UTC)."""

    output_field = BigIntegerField()
    arity = 0

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        *args: Any,
        **extra_context: Any,
    ) -> tuple[str, tuple[str | int, ...]]:
        try:
            return _SQL[connection.vendor], ()
        except KeyError:
            raise NotSupportedError(
                f"djangotasks reads the database's clock on SQLite, PostgreSQL and "
                f"MySQL/MariaDB, not on {connection.vendor}."
            ) from None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_milliseconds(value: object) -> datetime:
    """A reading of ``DatabaseClock`` as an aware datetime (UTC)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"the database clock read {value!r}, not a number")
    return EPOCH + timedelta(milliseconds=int(value))
