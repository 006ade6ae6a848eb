"""The interface of a wake-up channel, plain polling, and what channels on a connection share."""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import selectors
import time
from abc import ABC, abstractmethod
from typing import Any

from djangotasks.logfields import fields

logger = logging.getLogger("djangotasks")

# How often the queue is polled while a channel reports changes: only a safety net (a lost
# notification, a row inserted by hand). Without one, the POLL_INTERVAL setting applies.
SAFETY_POLL_INTERVAL = 5.0
# A lost channel connection is opened again after 1, 2, 4 ... s, at most this far apart.
RECONNECT_MIN = 1.0
RECONNECT_MAX = 30.0


class Wakeup(enum.Flag):
    """What a channel says happened since the daemon last asked."""

    NONE = 0
    QUEUE = enum.auto()  # work may have been added: look at the queue
    CANCELS = enum.auto()  # a running task may have been asked to cancel: check ours
    SCHEDULES = enum.auto()  # a schedule may have been saved: read the schedules again
    # With the others when the channel cannot tell what was committed (any commit on SQLite,
    # a KILL on MariaDB). A busy database commits all the time, so these are taken lazily.
    UNKNOWN = enum.auto()
    ANYTHING = QUEUE | CANCELS | SCHEDULES | UNKNOWN


class WakeupChannel(ABC):
    """How a daemon learns, without polling, that run(), cancel() or a schedule save
    committed. Opened once at start (``channels.open_channel``); owned by the daemon.

    The daemon calls ``drain()`` from its database work whenever ``due_at()`` has come:
    readiness of the channel's descriptor (in ``selector``) makes it due at once.
    """

    def __init__(self, selector: selectors.BaseSelector, poll_interval: float) -> None:
        self.selector = selector
        # The POLL_INTERVAL setting: how often the queue is polled while nothing reports.
        self.polling_interval = poll_interval
        self._fileno: int | None = None

    def fileno(self) -> int | None:
        """The descriptor registered in the daemon's selector; None: nothing to select on."""
        return self._fileno

    @property
    @abstractmethod
    def reports_changes(self) -> bool:
        """True while run(), cancel() and schedule saves reach the daemon through this
        channel. Otherwise the daemon polls the queue every POLL_INTERVAL, cancels every
        CANCEL_POLL_INTERVAL while tasks run, and the schedules every few seconds."""

    @property
    def poll_interval(self) -> float:
        """How often the daemon must poll the queue with this channel as it is now."""
        return SAFETY_POLL_INTERVAL if self.reports_changes else self.polling_interval

    @abstractmethod
    def due_at(self, now: float) -> float | None:
        """When ``drain()`` must be called even if nothing became readable (monotonic)."""

    @abstractmethod
    def drain(self, now: float) -> Wakeup:
        """Take in what arrived and say what changed; reopen a lost connection when due.
        Errors of the channel's own connection are handled here; the daemon's database
        connection's (SQLite asks it) are the daemon's to handle."""

    @abstractmethod
    def reset(self) -> None:
        """The daemon's database connection failed: a connection of the channel's own to
        the same server is likely broken too, perhaps silently (a dead peer sends nothing).
        Drop it; it is reopened when due."""

    def keep(self) -> list[Any]:
        """Objects a forked task process must hold and never finalise: finalising a copy
        of a connection would close the daemon's (PostgreSQL's Terminate, MySQL's QUIT)."""
        return []

    def close(self) -> None:
        self._unwatch()

    def _watch(self, fileno: int) -> None:
        self._unwatch()
        self._fileno = fileno
        self.selector.register(fileno, selectors.EVENT_READ, (self._on_readable, None))

    def _unwatch(self) -> None:
        # Before the descriptor is closed: a number the kernel reuses for the next
        # connection would otherwise still be registered (forked tasks keep the old socket
        # open, so epoll would not even drop it by itself).
        if self._fileno is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(self._fileno)
            self._fileno = None

    @abstractmethod
    def _on_readable(self) -> None:
        """The descriptor is readable: consume it without blocking (no daemon statement)."""


class PollingChannel(WakeupChannel):
    """No channel: MySQL (no KILL QUERY ID), an in-memory SQLite database, or another
    backend. The daemon polls every POLL_INTERVAL."""

    def __str__(self) -> str:
        return f"polling every {self.polling_interval:g} s"

    @property
    def reports_changes(self) -> bool:
        return False

    def due_at(self, now: float) -> None:
        return None

    def drain(self, now: float) -> Wakeup:
        return Wakeup.NONE

    def reset(self) -> None:
        return None  # nothing of its own to drop

    def _on_readable(self) -> None:
        raise AssertionError("a polling channel has no descriptor")


class ConnectionChannel(WakeupChannel):
    """A channel on a dedicated connection of its own (PostgreSQL, MariaDB): reopened with
    backoff when lost; meanwhile the daemon polls."""

    what = "wake-ups"  # for the log: what the connection is for

    def __init__(self, selector: selectors.BaseSelector, poll_interval: float) -> None:
        super().__init__(selector, poll_interval)
        self._conn: Any = None
        self._pending = Wakeup.NONE
        self._retry_at = time.monotonic()
        self._backoff = RECONNECT_MIN
        self._failed = False  # logged once per outage, not at every retry
        self._open(self._retry_at)

    @property
    def reports_changes(self) -> bool:
        return self._conn is not None

    def due_at(self, now: float) -> float | None:
        if self._pending:
            return now
        return self._retry_at if self._conn is None else self._deadline()

    def drain(self, now: float) -> Wakeup:
        if self._conn is None and now >= self._retry_at:
            self._open(now)
        elif self._conn is not None and (deadline := self._deadline()) and now >= deadline:
            self._lost("no answer in time")
        pending, self._pending = self._pending, Wakeup.NONE
        return pending

    def reset(self) -> None:
        if self._conn is not None:
            self._drop()
            self._retry_at = time.monotonic() + self._backoff

    def keep(self) -> list[Any]:
        return [self._conn] if self._conn is not None else []

    def close(self) -> None:
        self._drop()

    @abstractmethod
    def _connect(self) -> tuple[Any, int]:
        """Open the dedicated connection and start listening; (connection, its socket)."""

    def _deadline(self) -> float | None:
        """When an open connection that has said nothing must be given up as dead."""
        return None

    def _open(self, now: float) -> None:
        try:
            conn, fileno = self._connect()
        except Exception as exc:  # the driver's own errors, not Django's wrappers
            if not self._failed:
                logger.warning("taskd: cannot open a connection for %s (%s); polling meanwhile",
                               self.what, exc,
                               extra=fields("wakeup_unavailable", channel=self.what))  # fmt: skip
            self._failed = True
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, RECONNECT_MAX)
            return
        if self._failed:
            logger.info("taskd: %s work again", self.what,
                        extra=fields("wakeup_available", channel=self.what))  # fmt: skip
        self._failed = False
        self._backoff = RECONNECT_MIN
        self._conn = conn
        # Selected through a descriptor of our own: the driver closes its own when the
        # connection breaks, and a descriptor closed before it is unregistered stays in the
        # epoll set (forked tasks keep the socket open), then reports the dead socket's
        # readiness under the number the next connection gets: a blocking read of a sleep.
        self._watch(os.dup(fileno))
        # Whatever was committed while there was no connection told no one: look now.
        self._pending |= Wakeup.ANYTHING

    def _lost(self, reason: object) -> None:
        logger.warning("taskd: the connection for %s was lost (%s); reconnecting", self.what,
                       reason, extra=fields("wakeup_lost", channel=self.what))  # fmt: skip
        self._failed = True
        self._drop()
        now = time.monotonic()
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, RECONNECT_MAX)
        # Something may have been said just before: look rather than wait for the next poll.
        self._pending |= Wakeup.ANYTHING

    def _drop(self) -> None:
        own = self._fileno
        self._unwatch()
        if own is not None:
            with contextlib.suppress(OSError):
                os.close(own)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
