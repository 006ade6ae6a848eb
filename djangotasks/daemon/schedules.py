"""The daemon's part in schedules: a timer for the next tick, and what makes it fire early.

Every daemon keeps one; none is special. It fires (``scheduler.fire_due()``) when the next
tick comes. A schedule added or edited elsewhere is learnt from the wake-up channel (a
NOTIFY on PostgreSQL, any other process's commit on SQLite), at most once per
``LEARN_INTERVAL``; where there is none (MySQL/MariaDB) by reading the schedules every
``REREAD`` seconds. Idle, that costs no statement until the next tick on PostgreSQL and
SQLite, and one per ``REREAD`` on MySQL/MariaDB.
"""

from __future__ import annotations

import time

from djangotasks import scheduler

# Where the channel reports every change, reading the schedules again is only a safety net.
REREAD_WITH_CHANNEL = 60.0
REREAD = 5.0
# A busy database (other daemons' log flushes) changes all the time: learn at most this often.
LEARN_INTERVAL = 0.5
# Never loop faster than this on a tick that the database's clock says is not quite due.
MIN_WAIT = 0.005


class ScheduleTimer:
    def __init__(self) -> None:
        self.due_at = time.monotonic()  # a first pass at start: ticks missed while down
        self.fired_at = 0.0
        # Names of tasks whose schedules have a run waiting for them to end.
        self.waiting: frozenset[str] = frozenset()

    def wake(self) -> None:
        """Fire (or read the schedules again) at the next turn of the loop."""
        self.due_at = time.monotonic()

    def changed(self) -> None:
        """Something may have changed in the schedules: read them again soon."""
        self.due_at = min(self.due_at, max(time.monotonic(), self.fired_at + LEARN_INTERVAL))

    def task_ended(self, name: str) -> None:
        """A run ended: a run queued behind it may start now."""
        if name in self.waiting:
            self.wake()

    def fire(self, now: float, channel: bool) -> bool:
        """Act on the due ticks; set the timer for the next one. True if runs may have
        been made (look at the queue).

        ``channel``: changes to schedules will be reported (``changed()``).
        """
        found = scheduler.fire_due()
        self.fired_at = now
        self.waiting = found.waiting
        wait = REREAD_WITH_CHANNEL if channel else REREAD
        if found.next_in is not None:
            wait = min(wait, max(found.next_in.total_seconds(), MIN_WAIT))
        self.due_at = now + wait
        return found.acted
