"""The daemon's part in schedules: a timer for the next tick, and what makes it fire early.

Every daemon keeps one; none is special. It fires (``scheduler.fire_due()``) when the next
tick comes, and otherwise reads the schedules again now and then, so that a schedule added
or edited elsewhere takes effect: at once where the database wakes daemons (PostgreSQL
NOTIFY), within ``REREAD`` seconds elsewhere. Idle, that is one statement per ``REREAD``.
"""

from __future__ import annotations

import time

from djangotasks import scheduler

# Where a NOTIFY reports every change to a schedule, reading them again is only a safety net.
REREAD_WITH_NOTIFY = 60.0
REREAD = 10.0
# Never loop faster than this on a tick that the database's clock says is not quite due.
MIN_WAIT = 0.005


class ScheduleTimer:
    def __init__(self) -> None:
        self.due_at = time.monotonic()  # a first pass at start: ticks missed while down
        # Names of tasks whose schedules have a run waiting for them to end.
        self.waiting: frozenset[str] = frozenset()

    def wake(self) -> None:
        """Fire (or read the schedules again) at the next turn of the loop."""
        self.due_at = time.monotonic()

    def task_ended(self, name: str) -> None:
        """A run ended: a run queued behind it may start now."""
        if name in self.waiting:
            self.wake()

    def fire(self, now: float, notified: bool) -> None:
        """Act on the due ticks; set the timer for the next one.

        ``notified``: a NOTIFY will report changes to schedules (a LISTEN is open).
        """
        found = scheduler.fire_due()
        self.waiting = found.waiting
        wait = REREAD_WITH_NOTIFY if notified else REREAD
        if found.next_in is not None:
            wait = min(wait, max(found.next_in.total_seconds(), MIN_WAIT))
        self.due_at = now + wait
