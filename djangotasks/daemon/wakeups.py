"""How the daemon learns that something changed: its wake-up channels.

PostgreSQL sends a NOTIFY on every run() and cancel(); on SQLite the daemon watches the
database files (inotify on Linux, ``stat()`` elsewhere) and asks ``PRAGMA data_version``
whether another connection committed; MySQL/MariaDB cannot tell, so the daemon polls.
``WakeUps`` is a part of ``Daemon`` (a base class).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
from typing import TYPE_CHECKING

from django.db import connections

from djangotasks import notify

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from djangotasks.daemon.process import TaskProcess
    from djangotasks.daemon.schedules import ScheduleTimer

logger = logging.getLogger("djangotasks")

# How often a daemon stat()s the SQLite files (no SQL): where inotify wakes it, only as a
# safety net; elsewhere this is how it notices new work.
SQLITE_WATCH_INTERVAL = 0.01
SQLITE_WATCH_INTERVAL_WITH_INOTIFY = 1.0
# Looks at the queue (claim, cancels) happen at most this often while output is flowing.
MIN_LOOK_INTERVAL = 0.05


class WakeUps:
    # Provided by Daemon.
    alias: str
    wakeup_r: int
    selector: selectors.BaseSelector
    processes: dict[int, TaskProcess]
    listener: notify.PostgresListener | None
    watcher: notify.SQLiteWatcher | None
    listen_failed: bool
    look_needed: bool
    cancels_needed: bool
    watch_pending: bool
    next_watch_look: float
    next_watch_stat: float
    schedule_timer: ScheduleTimer

    @property
    def db(self) -> BaseDatabaseWrapper:
        """The tasks' database connection of the running thread (thread mode: the daemon's)."""
        return connections[self.alias]

    def _has_channel(self) -> bool:
        return self.listener is not None or self.watcher is not None

    def _open_wakeup_channel(self) -> None:
        if self.db.vendor == "postgresql":
            try:
                self.listener = notify.PostgresListener(self.alias)
                self.selector.register(
                    self.listener.fileno(), selectors.EVENT_READ, (self._on_notify, None)
                )
            except Exception as exc:  # psycopg's own errors, not Django's; retried later
                if not self.listen_failed:
                    logger.warning("taskd: cannot LISTEN for wake-ups (%s); polling", exc)
                self.listen_failed = True
                self._drop_listener()
            else:
                self.listen_failed = False
        elif self.db.vendor == "sqlite":
            path = str(self.db.settings_dict["NAME"])
            if path and path != ":memory:" and "mode=memory" not in path:
                self.watcher = notify.SQLiteWatcher(path, self.alias)
                fileno = self.watcher.fileno()
                if fileno is not None:
                    self.selector.register(
                        fileno, selectors.EVENT_READ, (self._on_sqlite_write, None)
                    )

    def _on_sqlite_write(self) -> None:
        assert self.watcher is not None
        if self.watcher.drain():
            self.watch_pending = True

    def _on_wakeup(self) -> None:
        # Signals (SIGCHLD, SIGTERM) and stop() write here to interrupt select().
        try:
            while os.read(self.wakeup_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _on_notify(self) -> None:
        assert self.listener is not None
        try:
            payloads = self.listener.drain()
        except Exception as exc:  # psycopg's own errors, not Django's wrappers
            logger.warning("taskd: LISTEN connection lost (%s); reconnecting", exc)
            self.listen_failed = True
            self._drop_listener()
            return
        for payload in payloads:
            if payload.startswith("cancel"):
                self.cancels_needed = True
            elif payload == "schedules":
                self.schedule_timer.changed()
            else:
                self.look_needed = True

    def _drop_listener(self) -> None:
        if self.listener is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.unregister(self.listener.fileno())
        self.listener.close()
        self.listener = None

    def _watch_sqlite(self, now: float) -> None:
        assert self.watcher is not None
        written, self.watch_pending = self.watch_pending, False
        self.next_watch_stat = now + (
            SQLITE_WATCH_INTERVAL
            if self.watcher.fileno() is None
            else SQLITE_WATCH_INTERVAL_WITH_INOTIFY
        )
        if self.watcher.changed(written):
            # While output flows the files change constantly: look at most every 50 ms.
            self.next_watch_look = now + MIN_LOOK_INTERVAL
            self.look_needed = True
            self.cancels_needed = bool(self.processes)
            self.schedule_timer.changed()

    def _next_watch(self, now: float) -> float:
        """When to ask the SQLite watcher next: a write was seen, it wants a second look (a
        commit seen being written), or the stat interval is up; never before next_watch_look."""
        assert self.watcher is not None
        due = self.next_watch_stat
        if self.watch_pending:
            due = now
        if self.watcher.recheck_at is not None:
            due = min(due, self.watcher.recheck_at)
        return max(due, self.next_watch_look)

    def _cancels_polled(self) -> bool:
        # Without a wake-up channel (MySQL) a cancel is only seen by asking; ask often while
        # tasks run (one indexed SELECT), so a cancel takes effect well within a second.
        return bool(self.processes) and not self._has_channel()
