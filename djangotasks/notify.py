"""Waking daemons: PostgreSQL LISTEN/NOTIFY, and a cheap change detector for SQLite.

MySQL/MariaDB have neither; daemons there poll every ``POLL_INTERVAL``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from django.db import connections

CHANNEL = "djangotasks"
logger = logging.getLogger("djangotasks")


def wake_workers(payload: str, using: str = "default") -> None:
    """Tell listening daemons something changed. Delivered when the transaction commits."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])


class PostgresListener:
    """A dedicated autocommit connection LISTENing on the channel; select() on ``fileno()``."""

    def __init__(self, using: str = "default") -> None:
        wrapper = connections[using]
        params = wrapper.get_connection_params()
        self._conn: Any = wrapper.get_new_connection(params)
        self._conn.autocommit = True
        self._conn.execute(f"LISTEN {CHANNEL}")

    def fileno(self) -> int:
        return int(self._conn.pgconn.socket)

    def drain(self) -> list[str]:
        """Payloads that have arrived, without blocking."""
        pgconn = self._conn.pgconn
        pgconn.consume_input()
        payloads = []
        while (notification := pgconn.notifies()) is not None:
            payloads.append(notification.extra.decode(errors="replace"))
        if pgconn.status != 0:  # CONNECTION_OK; a dropped connection must be rebuilt
            raise ConnectionError("LISTEN connection lost")
        return payloads

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


class SQLiteWatcher:
    """Detects commits to a SQLite database by the size and mtime of its files.

    A ``stat()`` costs no SQL statement, so an idle daemon can look every few milliseconds
    and still run no query until another process commits something.
    """

    def __init__(self, path: str) -> None:
        self._paths = [path, path + "-wal"]
        self._last = self._snapshot()

    def _snapshot(self) -> tuple[tuple[int, int], ...]:
        result = []
        for path in self._paths:
            try:
                st = os.stat(path)
                result.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                result.append((0, 0))
        return tuple(result)

    def changed(self) -> bool:
        current = self._snapshot()
        if current != self._last:
            self._last = current
            return True
        return False
