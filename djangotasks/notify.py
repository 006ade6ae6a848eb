"""Waking daemons: PostgreSQL LISTEN/NOTIFY, and a cheap change detector for SQLite.

MySQL/MariaDB have neither; daemons there poll every ``POLL_INTERVAL``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from django.db import connections

CHANNEL = "djangotasks"
RECHECK_DELAY = 0.05
logger = logging.getLogger("djangotasks")


def wake_workers(payload: str, using: str) -> None:
    """Tell listening daemons something changed. Delivered when the transaction commits."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])


class PostgresListener:
    """A dedicated autocommit connection LISTENing on the channel; select() on ``fileno()``."""

    def __init__(self, using: str) -> None:
        wrapper = connections[using]
        params = wrapper.get_connection_params()
        self._conn: Any = wrapper.get_new_connection(params)
        try:
            self._conn.autocommit = True
            self._conn.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            self.close()  # retried every maintenance round: a failed try must not leak a socket
            raise
        # Kept: psycopg raises when asked for the socket of a connection that is lost, and
        # the daemon needs it precisely then, to unregister it.
        self._fileno = int(self._conn.pgconn.socket)

    def fileno(self) -> int:
        return self._fileno

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
    """Detects commits by other processes to a SQLite database.

    On Linux, inotify reports writes to the database files (``fileno()`` becomes readable),
    so an idle daemon sleeps until something is written. Elsewhere ``fileno()`` is None and
    the daemon calls ``changed()`` every few milliseconds: a ``stat()`` costs no SQL
    statement. The files also change when the daemon itself writes (heartbeats, logs);
    ``PRAGMA data_version`` then tells whether another connection committed too.

    It never opens a database file: POSIX record locks belong to the process, so closing
    any descriptor of ``-shm`` would drop the locks this process's own SQLite connection
    holds on it, and the next process to open the database would rebuild the WAL index
    under our feet (SIGBUS, or a corrupt index). ``stat()`` and inotify open nothing.
    """

    def __init__(self, path: str, using: str) -> None:
        from djangotasks.daemon.linux import FileWrites  # ctypes: only daemons need it

        # SQLite puts "-wal" beside the file a symlink points to; so do we.
        path = os.path.realpath(path)
        self._paths = [path, path + "-wal"]
        self._last = self._snapshot()
        self._using = using
        self._connection: object = None
        self._version: int | None = None
        self._recheck_at: float | None = None
        self._writes: FileWrites | None = None
        directory, name = os.path.split(path)
        try:
            self._writes = FileWrites(directory, {name, name + "-wal"})
        except OSError as exc:  # not Linux, or out of inotify instances/watches
            logger.info("taskd: no inotify for %s (%s); watching it by polling", path, exc)

    def fileno(self) -> int | None:
        """A descriptor that is readable when the files were written to; None: poll instead."""
        return self._writes.fileno() if self._writes is not None else None

    def drain(self) -> bool:
        """Consume the write events; True if the database files were written to."""
        return self._writes.drain() if self._writes is not None else True

    @property
    def recheck_at(self) -> float | None:
        """When ``changed()`` wants to be called again although no new write was seen."""
        return self._recheck_at

    def close(self) -> None:
        if self._writes is not None:
            self._writes.close()
            self._writes = None

    def _snapshot(self) -> tuple[object, ...]:
        result: list[object] = []
        for path in self._paths:
            try:
                st = os.stat(path)
                result.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                result.append(None)
        return tuple(result)

    def changed(self, written: bool = False) -> bool:
        """True if another connection committed since the last call that returned True.

        ``written``: inotify saw a write, so ask SQLite even if the files' times and sizes
        look the same (times are coarse, and a WAL that starts over keeps its size).
        """
        current = self._snapshot()
        now = time.monotonic()
        if current == self._last and not written:
            if self._recheck_at is None or now < self._recheck_at:
                return False
            self._recheck_at = None
        else:
            # The files change while a commit is being written, a moment before the commit
            # is visible: if it is not visible yet, look once more shortly after. The same
            # look catches a second commit whose stat() matched the first one's.
            self._last = current
            self._recheck_at = now + RECHECK_DELAY
        connection = connections[self._using]
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            (value,) = cursor.fetchone()
        # data_version is per connection: a new connection (after a reconnect) starts over.
        # Keeping the connection object itself (not its id, which can be reused) tells them apart.
        if connection.connection is self._connection and value == self._version:
            return False
        self._connection, self._version = connection.connection, value
        self._recheck_at = None
        return True
