"""The database djangotasks' tables live on: the alias the project's routers give for ``Task``.

Every transaction, lock, wake-up and vendor check goes through here, never through
``default``: a project may route djangotasks to a database of its own (its queue apart from
its data), and ``transaction.atomic()`` on the wrong alias protects nothing.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import OperationalError, connections, router, transaction

from djangotasks import dberrors
from djangotasks.logfields import fields

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("djangotasks")

# How many times a deadlock's victim is run in all: contention between a few callers resolves
# in one or two more; a fourth loss means something else is wrong, and the caller sees it.
DEADLOCK_ATTEMPTS = 4


def alias() -> str:
    """The alias that ``Task``, ``Worker`` and ``TaskLogChunk`` are written to."""
    from djangotasks.models import Task

    return router.db_for_write(Task)


def connection() -> BaseDatabaseWrapper:
    return connections[alias()]


def atomic() -> transaction.Atomic:
    """``transaction.atomic()`` on the tasks' database."""
    return transaction.atomic(using=alias())


def on_commit(func: object) -> None:
    """Run ``func`` after the current transaction on the tasks' database commits."""
    transaction.on_commit(func, using=alias())  # type: ignore[arg-type]


def deadlock_retried[**P, R](func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` again when the database rolled it back to break a deadlock, a few times.

    Only when ``func`` owns its transaction: called inside the caller's, the whole of the
    caller's transaction is lost with it (MariaDB rolls it all back), and only the caller
    can run it again; the error is theirs to see.
    """

    @functools.wraps(func)
    def retried(*args: P.args, **kwargs: P.kwargs) -> R:
        owned = not connection().in_atomic_block
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                return func(*args, **kwargs)
            except OperationalError as exc:
                if not owned or attempt == DEADLOCK_ATTEMPTS or not dberrors.is_deadlock(exc):
                    raise
                name = func.__qualname__
                logger.info("%s was chosen to break a deadlock (attempt %d); running it again.",
                            name, attempt, extra=fields("deadlock_retried", call=name,
                                                        attempt=attempt))  # fmt: skip
            # Apart, so that the same callers do not meet again on the same locks.
            time.sleep(random.uniform(0, 0.02 * attempt))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    return retried
