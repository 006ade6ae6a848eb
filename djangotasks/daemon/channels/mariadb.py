"""MariaDB: a sleeping statement on a dedicated connection, which committers interrupt.

The daemon sends ``SELECT SLEEP(30) /* djangotasks-wakeup */`` without waiting for it
(mysqlclient's ``send_query``) and selects on the socket. A committer of run(), cancel() or a
schedule finds every such statement in ``information_schema.PROCESSLIST`` and interrupts it
with ``KILL QUERY ID`` (``notify.wake_workers``): the socket becomes readable, the daemon
reads the answer, sends the next sleep and looks. A KILL carries no payload, so every
wake-up is ``Wakeup.ANYTHING``. MySQL has no ``KILL QUERY ID``: it polls (``PollingChannel``).
"""

from __future__ import annotations

import contextlib
import select
import selectors
import time
from typing import Any

from django.db import connections

from djangotasks import notify
from djangotasks.daemon.channels.base import ConnectionChannel, Wakeup

# Each sleep is one statement: an idle daemon sends one per SLEEP_SECONDS.
SLEEP_SECONDS = 30
# An answer this late after the sleep's end means a dead connection (a peer that vanished
# sends nothing): given up, and opened again.
LATE_MARGIN = 10.0


class MariaDBChannel(ConnectionChannel):
    what = "MariaDB wake-ups"

    def __init__(self, alias: str, selector: selectors.BaseSelector, poll_interval: float) -> None:
        self.alias = alias
        self._armed_at = 0.0
        super().__init__(selector, poll_interval)

    def __str__(self) -> str:
        return "MariaDB KILL QUERY of a sleeping statement"

    def reset(self) -> None:
        # Kept: a lost connection shows itself (EOF at once, or no answer by the deadline),
        # and a dropped one would sleep on in the server (see close()). A failure of the
        # daemon's connection (a deadlock, a lock wait) need not cost a reconnect.
        return None

    def close(self) -> None:
        # The server notices a closed client only once its statement ends: interrupt our
        # sleep first, or it holds a connection for up to SLEEP_SECONDS more. Best effort,
        # on the daemon's connection if it is open: not worth a connection attempt (which a
        # database out of reach could make hang) at shutdown.
        daemons = connections[self.alias]
        if self._conn is not None and daemons.connection is not None:
            with contextlib.suppress(Exception), daemons.cursor() as cursor:
                cursor.execute("KILL QUERY %s", [int(self._conn.thread_id())])
        super().close()

    def _connect(self) -> tuple[Any, int]:
        wrapper = connections[self.alias]
        # Autocommit: the sleeps must not sit in one endless transaction.
        conn = wrapper.get_new_connection({**wrapper.get_connection_params(), "autocommit": True})
        try:
            self._arm(conn)
            fileno = int(conn.fileno())
        except BaseException:
            conn.close()  # retried later: a failed try must not leak a socket
            raise
        return conn, fileno

    def _arm(self, conn: Any) -> None:
        conn.send_query(notify.mariadb_sleep(SLEEP_SECONDS).encode())
        self._armed_at = time.monotonic()

    def _deadline(self) -> float:
        return self._armed_at + SLEEP_SECONDS + LATE_MARGIN

    def _on_readable(self) -> None:
        if self._conn is None:
            return  # dropped by an earlier callback of the same select()
        try:
            # Never a blocking read: the answer must be there (a read before it comes waits
            # for the whole sleep, and the daemon's heartbeats with it).
            if not select.select([self._conn.fileno()], [], [], 0)[0]:
                return
            interrupted = self._read_answer()
            # Sleep again before the daemon looks: a commit it does not see in that look
            # finds this new sleep to interrupt (or, if its committer looks in the instant
            # before the server starts it, the safety poll finds it).
            self._arm(self._conn)
        except Exception as exc:  # the driver's own errors: the connection is gone
            self._lost(exc)
            return
        if interrupted:
            self._pending |= Wakeup.ANYTHING
        else:
            # The time ran out. A commit between that end and the new sleep found nothing
            # to interrupt: look at the queue (and cancels) once; no need for schedules.
            self._pending |= Wakeup.QUEUE | Wakeup.CANCELS

    def _read_answer(self) -> bool:
        """The sleep's answer: True if it was interrupted (a wake-up)."""
        try:
            self._conn.read_query_result()
            result = self._conn.store_result()
            rows: Any = result.fetch_row() if result is not None else ()
        except Exception as exc:
            code = exc.args[0] if exc.args else None
            if code == notify.QUERY_INTERRUPTED:  # how MariaDB reports the KILL
                return True
            if code == notify.STATEMENT_TIMEOUT:  # the server's max_statement_time
                return False
            raise
        # SLEEP() returns 1 when interrupted without an error (MySQL's way), 0 when done.
        return bool(rows) and rows[0][0] == 1
