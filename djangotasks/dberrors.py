"""Which database errors are outages (wait and retry) and which belong to one write.

The daemon retries an outage with backoff for as long as it lasts; an error caused by what
one task wrote (a value the column rejects, a packet over MySQL's ``max_allowed_packet``)
would come back on every retry and must instead end or trim that task's write. Django's
exception classes do not tell them apart (MariaDB's "packet too large" and "server has gone
away" are both ``OperationalError``), so the driver's own error code decides.
"""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

# MySQL/MariaDB client and server codes that mean the connection is gone or unusable, or
# that the server cannot serve anyone right now.
MYSQL_OUTAGE_CODES = frozenset(
    {
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1053,  # ER_SERVER_SHUTDOWN
        1205,  # ER_LOCK_WAIT_TIMEOUT: contention, gone on a later try
        1213,  # ER_LOCK_DEADLOCK
        1927,  # ER_CONNECTION_KILLED
        2002,  # CR_CONNECTION_ERROR (socket)
        2003,  # CR_CONN_HOST_ERROR (TCP)
        2005,  # CR_UNKNOWN_HOST (DNS hiccup)
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST
        2026,  # CR_SSL_CONNECTION_ERROR
        2055,  # CR_SERVER_LOST_EXTENDED
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT: disconnected for inactivity
    }
)
# PostgreSQL SQLSTATEs of the same kind; class 08 (connection exception) is matched whole.
POSTGRES_OUTAGE_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
        "55P03",  # lock_not_available
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
    }
)
# SQLite primary result codes (the low byte of the extended code): busy, locked, I/O error,
# disk full, cannot open, lock protocol error.
SQLITE_OUTAGE_CODES = frozenset({5, 6, 10, 13, 14, 15})


# Errors that mean "this transaction lost a lock race and the database rolled it back":
# running it again is what the database asks for. MariaDB picks a victim when two INSERTs
# of the same unique key wait on a third transaction's row, which concurrent run() and
# run_for() calls do; PostgreSQL when two transactions lock rows in opposite orders.
MYSQL_VICTIM_CODES = frozenset({1213})  # ER_LOCK_DEADLOCK
POSTGRES_VICTIM_STATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock


def is_deadlock(exc: BaseException) -> bool:
    """True when the database rolled back ``exc``'s transaction to break a deadlock."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if hasattr(cause, "sqlstate"):  # psycopg
        return cause.sqlstate in POSTGRES_VICTIM_STATES
    code = cause.args[0] if cause.args else None
    return isinstance(code, int) and code in MYSQL_VICTIM_CODES  # sqlite3's args are text


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means the database is unreachable or busy, not that a write is bad."""
    if isinstance(exc, InterfaceError):
        return True  # the connection object itself is closed or broken
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    sqlite_code = getattr(cause, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in SQLITE_OUTAGE_CODES
    if hasattr(cause, "sqlstate"):  # psycopg
        state = cause.sqlstate
        # No SQLSTATE: the client itself failed (refused, reset, "the connection is lost").
        return state is None or state.startswith("08") or state in POSTGRES_OUTAGE_STATES
    code = cause.args[0] if cause.args else None
    if isinstance(code, int):  # mysqlclient: (code, message)
        return code in MYSQL_OUTAGE_CODES
    # An OperationalError we cannot classify (an older sqlite3 without error codes, another
    # driver): treat it as an outage, which is what every OperationalError used to be.
    return True
