"""Waking daemons from the committer's side: run(), cancel() and schedule saves.

PostgreSQL: ``NOTIFY``, delivered when the transaction commits. MariaDB: after the commit,
interrupt the statement each daemon sleeps in (``KILL QUERY ID``). SQLite needs nothing
(daemons watch the files); MySQL has no way, and its daemons poll every ``POLL_INTERVAL``.
The daemons' side is in ``djangotasks.daemon.channels``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from django.db import DatabaseError, connections, transaction

from djangotasks.logfields import fields

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("djangotasks")

# PostgreSQL's LISTEN/NOTIFY channel.
CHANNEL = "djangotasks"
# MariaDB: the comment that marks a daemon's sleeping statement.
MARIADB_MARKER = "djangotasks-wakeup"
# MariaDB error codes: the statement was interrupted (by KILL QUERY), ran past the server's
# max_statement_time, or was gone before the KILL came (that daemon is awake already).
QUERY_INTERRUPTED = 1317
STATEMENT_TIMEOUT = 1969
UNKNOWN_QUERY_ID = 1957
# The sleeping statements of this database's daemons. Anchored at both ends, so the
# statement that looks for them (it contains the pattern, but starts otherwise) is not one.
FIND_SLEEPING = (
    "SELECT QUERY_ID FROM information_schema.PROCESSLIST "
    "WHERE DB = DATABASE() AND COMMAND = 'Query' AND INFO LIKE %s"
)
SLEEPING = f"SELECT SLEEP(%) /* {MARIADB_MARKER} */"

_wake_failed = False  # a failing wake-up is logged once per process


def mariadb_sleep(seconds: int) -> str:
    """The statement a MariaDB daemon sleeps in; ``FIND_SLEEPING`` matches it."""
    return f"SELECT SLEEP({int(seconds)}) /* {MARIADB_MARKER} */"


def is_mariadb(connection: BaseDatabaseWrapper) -> bool:
    """MariaDB rather than MySQL, from the server's greeting (no query)."""
    connection.ensure_connection()
    return "mariadb" in connection.connection.get_server_info().lower()


def wake_workers(payload: str, using: str) -> None:
    """Tell the daemons something changed: called in the transaction that makes the change
    (or right after an autocommit write), delivered only once it commits."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        if payload == "run":
            return  # new rows: the INSERT's own trigger notified (migration 0007)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
    elif connection.vendor == "mysql" and is_mariadb(connection):
        # Interrupted before the commit, a daemon would look and find nothing new.
        transaction.on_commit(partial(wake_mariadb, using), using=using)


def wake_mariadb(using: str) -> None:
    """Interrupt every sleeping statement of this database's daemons (on every host).

    Never fails the caller: without the wake-up the daemons still find the work at their
    next safety poll. ``KILL QUERY ID`` needs no privilege for the user's own statements;
    a query id is never reused while the server runs, so a stale one kills nothing.
    """
    failure: Exception | None = None
    try:
        with connections[using].cursor() as cursor:
            cursor.execute(FIND_SLEEPING, [SLEEPING])
            for (query_id,) in cursor.fetchall():
                try:
                    cursor.execute("KILL QUERY ID %s", [int(query_id)])
                except DatabaseError as exc:
                    # Unknown: it ended between the two statements (that daemon is awake
                    # already). Another error (another user's daemon) spares the others.
                    if not exc.args or exc.args[0] != UNKNOWN_QUERY_ID:
                        failure = exc
    except Exception as exc:
        failure = exc
    if failure is not None:
        _wake_failed_once(failure)


def _wake_failed_once(exc: Exception) -> None:
    global _wake_failed
    if not _wake_failed:
        logger.warning(
            "djangotasks: could not wake the daemons (%s); they find new work and cancels "
            "at their next poll instead (within seconds)",
            exc,
            extra=fields("wakeup_failed"),
        )
    _wake_failed = True


def processlist_error(connection: BaseDatabaseWrapper) -> str | None:
    """Why a committer on ``connection`` (MariaDB) cannot find the sleeping statements, or
    None when it can."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT QUERY_ID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
            )
            cursor.fetchall()
    except DatabaseError as exc:
        return str(exc)
    return None
