"""Writing a new task row in one plain statement: the INSERT behind ``run()`` and ``enqueue()``.

``run()`` is the call a project makes most, and Django's ``Model.save()`` spends more Python
compiling the INSERT of the task's 24 columns than the database spends storing them. The
statement depends only on the database, so it is written once per database alias and kept;
what ``save(force_insert=True)`` does around it is done here too: ``pre_save`` and
``post_save`` (sent when someone listens), defaults and ``auto_now_add`` through each field's
``pre_save()``, values prepared by each field for this database, the new id, and the
instance's state (saved, on this database).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import signals

from djangotasks import routing

if TYPE_CHECKING:
    from django.db import models
    from django.db.backends.base.base import BaseDatabaseWrapper

    from djangotasks.models import Task

# (alias, vendor) -> the INSERT statement and whether it returns the new id itself.
_statements: dict[tuple[str, str], tuple[str, bool]] = {}


def insert_row(task: Task) -> None:
    """``task.save(force_insert=True)`` on the tasks' database, in one statement.

    Raises what ``save()`` raises (``IntegrityError`` when the live key is taken), and
    leaves ``task`` unsaved then. Inside a transaction it is part of it; outside, it commits
    by itself.
    """
    from djangotasks.models import Task

    connection = routing.connection()
    using = connection.alias
    if signals.pre_save.has_listeners(Task):
        signals.pre_save.send(Task, instance=task, raw=False, using=using, update_fields=None)
    sql, returns_id = _statement(connection)
    params = [field.get_db_prep_save(field.pre_save(task, True), connection) for field in _fields()]
    meta = Task._meta
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returns_id:
            new_id = cursor.fetchone()[0]
        else:
            new_id = connection.ops.last_insert_id(cursor, meta.db_table, str(meta.pk.column))
    task.pk = new_id
    task._state.adding = False
    task._state.db = using
    if signals.post_save.has_listeners(Task):
        signals.post_save.send(
            Task, instance=task, created=True, update_fields=None, raw=False, using=using
        )


def _fields() -> list[models.Field[Any, Any]]:
    """Every column but the id, which the database assigns."""
    from djangotasks.models import Task

    meta = Task._meta
    return [field for field in meta.concrete_fields if field is not meta.pk]


def _statement(connection: BaseDatabaseWrapper) -> tuple[str, bool]:
    key = (connection.alias, connection.vendor)
    if key not in _statements:
        from djangotasks.models import Task

        meta = Task._meta
        quote = connection.ops.quote_name
        columns = ", ".join(quote(str(field.column)) for field in _fields())
        values = ", ".join("%s" for _ in _fields())
        sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({values})"
        # PostgreSQL's cursor has no lastrowid; SQLite's and MySQL's give the id at no cost.
        returns_id = connection.vendor == "postgresql"
        if returns_id:
            sql += f" RETURNING {quote(str(meta.pk.column))}"
        _statements[key] = (sql, returns_id)
    return _statements[key]
