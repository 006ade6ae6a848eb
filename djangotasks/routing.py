"""The database djangotasks' tables live on: the alias the project's routers give for ``Task``.

Every transaction, lock, wake-up and vendor check goes through here, never through
``default``: a project may route djangotasks to a database of its own (its queue apart from
its data), and ``transaction.atomic()`` on the wrong alias protects nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import connections, router, transaction

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper


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
