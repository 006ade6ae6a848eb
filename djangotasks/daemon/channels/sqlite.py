"""SQLite: watch the database files (inotify on Linux, ``stat()`` elsewhere) and ask
``PRAGMA data_version`` whether another connection committed."""

from __future__ import annotations

import logging
import os
import selectors
import time
from typing import TYPE_CHECKING

from django.db import connections

from djangotasks.daemon.channels.base import Wakeup, WakeupChannel
from djangotasks.logfields import fields

if TYPE_CHECKING:
    from djangotasks.daemon.linux import FileWrites

logger = logging.getLogger("djangotasks")

# How often a daemon stat()s the SQLite files (no SQL): where inotify wakes it, only as a
# safety net; elsewhere this is how it notices new work.
WATCH_INTERVAL = 0.01
WATCH_INTERVAL_WITH_INOTIFY = 1.0
# Looks at the queue (claim, cancels) happen at most this often while output is flowing.
MIN_LOOK_INTERVAL = 0.05
# The files change while a commit is being written, a moment before it is visible.
RECHECK_DELAY = 0.05


class SQLiteChannel(WakeupChannel):
    """Detects commits by other processes to a SQLite database.

    On Linux, inotify reports writes to the database files (the descriptor becomes
    readable), so an idle daemon sleeps until something is written. Elsewhere there is no
    descriptor and the daemon is due every few milliseconds: a ``stat()`` costs no SQL
    statement. The files also change when the daemon itself writes (heartbeats, logs);
    ``PRAGMA data_version`` then tells whether another connection committed too. A commit
    says nothing of what it was: every change is ``Wakeup.ANYTHING``.

    It never opens a database file: POSIX record locks belong to the process, so closing
    any descriptor of ``-shm`` would drop the locks this process's own SQLite connection
    holds on it, and the next process to open the database would rebuild the WAL index
    under our feet (SIGBUS, or a corrupt index). ``stat()`` and inotify open nothing.
    """

    def __init__(
        self, path: str, alias: str, selector: selectors.BaseSelector, poll_interval: float
    ) -> None:
        from djangotasks.daemon.linux import FileWrites  # ctypes: only daemons need it

        super().__init__(selector, poll_interval)
        # SQLite puts "-wal" beside the file a symlink points to; so do we.
        path = os.path.realpath(path)
        self._paths = [path, path + "-wal"]
        self._last = self._snapshot()
        self._alias = alias
        self._connection: object = None
        self._version: int | None = None
        now = time.monotonic()
        self._recheck_at: float | None = None
        self._next_stat = now
        self._next_look = now
        self._written = False  # inotify saw a write not yet looked at
        self._writes: FileWrites | None = None
        directory, name = os.path.split(path)
        try:
            self._writes = FileWrites(directory, {name, name + "-wal"})
        except OSError as exc:  # not Linux, or out of inotify instances/watches
            logger.info("taskd: no inotify for %s (%s); watching it by polling", path, exc,
                        extra=fields("inotify_unavailable"))  # fmt: skip
        else:
            self._watch(self._writes.fileno())

    def __str__(self) -> str:
        return "SQLite file watch" + (" (inotify)" if self._writes is not None else " (stat)")

    @property
    def reports_changes(self) -> bool:
        return True

    def due_at(self, now: float) -> float:
        """A write was seen, a commit seen being written wants a second look, or the stat
        interval is up; never before the next look is allowed."""
        due = now if self._written else self._next_stat
        if self._recheck_at is not None:
            due = min(due, self._recheck_at)
        return max(due, self._next_look)

    def drain(self, now: float) -> Wakeup:
        written, self._written = self._written, False
        self._next_stat = now + (
            WATCH_INTERVAL if self._writes is None else WATCH_INTERVAL_WITH_INOTIFY
        )
        if not self._changed(now, written):
            return Wakeup.NONE
        # While output flows the files change constantly: look at most every 50 ms.
        self._next_look = now + MIN_LOOK_INTERVAL
        return Wakeup.ANYTHING

    def reset(self) -> None:
        return None  # the files need no connection of their own

    def close(self) -> None:
        super().close()
        if self._writes is not None:
            self._writes.close()
            self._writes = None

    def _on_readable(self) -> None:
        # Only consumes the events (no SQL): the look itself waits for due_at().
        if self._writes is not None and self._writes.drain():
            self._written = True

    def _snapshot(self) -> tuple[object, ...]:
        result: list[object] = []
        for path in self._paths:
            try:
                st = os.stat(path)
                result.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                result.append(None)
        return tuple(result)

    def _changed(self, now: float, written: bool) -> bool:
        """True if another connection committed since the last call that returned True.

        ``written``: inotify saw a write, so ask SQLite even if the files' times and sizes
        look the same (times are coarse, and a WAL that starts over keeps its size).
        """
        current = self._snapshot()
        if current == self._last and not written:
            if self._recheck_at is None or now < self._recheck_at:
                return False
            self._recheck_at = None
        else:
            # If the commit is not visible yet, look once more shortly after. The same
            # look catches a second commit whose stat() matched the first one's.
            self._last = current
            self._recheck_at = now + RECHECK_DELAY
        connection = connections[self._alias]
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
