"""PostgreSQL: LISTEN on a dedicated connection; run(), cancel() and schedule saves NOTIFY."""

from __future__ import annotations

import selectors
from typing import Any

from django.db import connections

from djangotasks.daemon.channels.base import ConnectionChannel, Wakeup
from djangotasks.notify import CHANNEL


class PostgresChannel(ConnectionChannel):
    """A dedicated autocommit connection LISTENing on the channel. A notification is
    delivered when the sending transaction commits, with a payload that says what changed."""

    what = "PostgreSQL wake-ups (LISTEN)"

    def __init__(self, alias: str, selector: selectors.BaseSelector, poll_interval: float) -> None:
        self.alias = alias
        super().__init__(selector, poll_interval)

    def __str__(self) -> str:
        return "PostgreSQL LISTEN/NOTIFY"

    def _connect(self) -> tuple[Any, int]:
        wrapper = connections[self.alias]
        conn = wrapper.get_new_connection(wrapper.get_connection_params())
        try:
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
            # Kept: psycopg raises when asked for the socket of a connection that is lost,
            # and the daemon needs it precisely then, to unregister it.
            fileno = int(conn.pgconn.socket)
        except BaseException:
            conn.close()  # retried later: a failed try must not leak a socket
            raise
        return conn, fileno

    def _on_readable(self) -> None:
        if self._conn is None:
            return  # dropped by an earlier callback of the same select()
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
        except Exception as exc:  # psycopg's own errors, not Django's wrappers
            self._lost(exc)
            return
        while (notification := pgconn.notifies()) is not None:
            payload = notification.extra.decode(errors="replace")
            if payload.startswith("cancel"):
                self._pending |= Wakeup.CANCELS
            elif payload == "schedules":
                self._pending |= Wakeup.SCHEDULES
            else:
                self._pending |= Wakeup.QUEUE
        if pgconn.status != 0:  # CONNECTION_OK; a dropped connection must be rebuilt
            self._lost("LISTEN connection lost")
