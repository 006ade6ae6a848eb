"""The daemon's part in schedules: a timer for the next tick, and what makes it fire early.

Every daemon keeps one; none is special. It fires (``scheduler.fire_due()``) when the next
tick comes. A schedule added or edited elsewhere is learnt from the wake-up channel: a
NOTIFY that says so on PostgreSQL (read within ``LEARN_INTERVAL``); on SQLite any other
process's commit and on MariaDB any wake-up, which do not say what changed (read within
``GUESS_INTERVAL``). Where there is no channel (MySQL, or one that is down) the schedules are
read every ``REREAD`` seconds. Idle, that costs no statement until the next tick with a
channel, and one per ``REREAD`` without.
"""

from __future__ import annotations

import time

from djangotasks import scheduler

# Where the channel reports every change, reading the schedules again is only a safety net.
REREAD_WITH_CHANNEL = 60.0
REREAD = 5.0
# Read again at most this often after a channel said that a schedule changed.
LEARN_INTERVAL = 0.5
# ... and after a commit of unknown content: on a busy database (other daemons' log flushes,
# every run()) that is all the time, and reading the schedules each time cost up to two
# statements a second per daemon, schedules or not. Reading at most every 2 s costs at most
# half a statement a second, and a schedule saved in the admin is still learnt within 2 s
# (its first ticks are then late, not missed: scheduler.LEARNT_WITHIN).
GUESS_INTERVAL = 2.0
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

    def changed(self, certain: bool = True) -> None:
        """Something may have changed in the schedules: read them again soon.

        ``certain``: the channel said a schedule was saved (PostgreSQL); otherwise only that
        something was committed (SQLite, MariaDB), which is read lazily.
        """
        wait = LEARN_INTERVAL if certain else GUESS_INTERVAL
        self.due_at = min(self.due_at, max(time.monotonic(), self.fired_at + wait))

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
