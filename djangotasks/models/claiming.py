"""How a daemon takes work from the queue: the claim, and the pids of what it started.

The claim runs after every task that ends, so it is written for the daemon's loop: on
PostgreSQL one ``UPDATE ... RETURNING`` statement, on SQLite a read and that statement, on
MySQL/MariaDB (no ``UPDATE ... RETURNING``) a short transaction. The query of the candidates
is built by the ORM once per daemon and (queues, limit), then reused with a new "now": the
ORM costs a millisecond or two of Python to build it, more than the database takes to run it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from djangotasks import routing
from djangotasks.models.task import Task, content_types
from djangotasks.models.transitions import _announce
from djangotasks.models.worker import Worker
from djangotasks.statuses import Status

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

# Stands for "now" while the candidates' query is compiled; its parameter is then replaced.
_SENTINEL = datetime(2000, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@dataclass(frozen=True)
class _Candidates:
    sql: str  # SELECT id AS pk ... ORDER BY priority, id LIMIT n
    params: tuple[Any, ...]
    now_at: tuple[int, ...]  # which parameters are "now"


_compiled: dict[tuple[str, frozenset[str] | None, int], _Candidates] = {}


def claim(worker: Worker, limit: int, queues: Collection[str] | None = None) -> list[Task]:
    """Atomically take up to ``limit`` runnable tasks for ``worker``: priority, then FIFO.

    ``queues``: only tasks of these queues (None: of every queue).
    """
    if limit <= 0:
        return []
    connection = routing.connection()
    sql, params = _candidates(connection, queues, limit)
    if connection.vendor == "sqlite":
        # On SQLite the claim takes the database's only write lock, and daemons look here on
        # every change to the file (another daemon's heartbeat, a line of output): a plain
        # read first keeps them from queueing writers for nothing.
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.fetchone() is None:
                return []
    if connection.vendor in ("postgresql", "sqlite"):
        tasks = _claim_returning(connection, worker, sql, params)
    else:
        tasks = _claim_in_steps(connection, worker, sql, params)
    for task in tasks:
        _announce(task, Status.SCHEDULED, Status.RUNNING)
    return tasks


def _candidates(
    connection: BaseDatabaseWrapper, queues: Collection[str] | None, limit: int
) -> tuple[str, list[Any]]:
    """The SQL and parameters of the claimable tasks' ids, best first, at most ``limit``."""
    key = (connection.alias, frozenset(queues) if queues is not None else None, limit)
    compiled = _compiled.get(key)
    adapt = connection.ops.adapt_datetimefield_value
    if compiled is None:
        query = (
            Task.objects.in_queues(queues)
            .claimable(_SENTINEL)
            .order_by("-priority", "id")
            .values("pk")[:limit]
        )
        sql, params = query.query.get_compiler(connection=connection).as_sql()
        marker = adapt(_SENTINEL)
        now_at = tuple(i for i, p in enumerate(params) if p in (_SENTINEL, marker))
        if len(now_at) != 1:  # a query of another shape: never reuse a wrong "now"
            raise RuntimeError(f"the claim's query has {len(now_at)} 'now' parameters")
        compiled = _compiled[key] = _Candidates(sql, tuple(params), now_at)
    params = list(compiled.params)
    now = timezone.now()
    for index in compiled.now_at:
        params[index] = now if params[index] == _SENTINEL else adapt(now)
    return compiled.sql, params


def _claim_returning(
    connection: BaseDatabaseWrapper, worker: Worker, candidates: str, params: list[Any]
) -> list[Task]:
    """PostgreSQL and SQLite: the claim is one ``UPDATE ... RETURNING`` statement.

    Our worker row is a condition of it, locked (PostgreSQL): a daemon declared lost (fenced
    by another) claims nothing more, and one that fences us waits until this claim is
    committed, then ends it too. On SQLite the statement holds the only write lock, and the
    status condition makes it a compare-and-set. A start never precedes the row's creation
    (a task committed just after "now" was read).
    """
    quote = connection.ops.quote_name
    fields = list(Task._meta.concrete_fields)
    columns = ", ".join(quote(str(field.column)) for field in fields)
    table, workers = quote(Task._meta.db_table), quote(Worker._meta.db_table)
    if connection.vendor == "postgresql":
        # Materialised: selected and locked once. As a plain IN (subquery), PostgreSQL may
        # run it again for each row it updates, skip the rows it has just updated, and
        # claim more than the limit. Two daemons skip each other's rows rather than queue
        # behind them (written out: Django compiles select_for_update() only inside a
        # transaction).
        head = f"WITH candidates AS MATERIALIZED ({candidates} FOR UPDATE SKIP LOCKED) "
        chosen, lock, later = "SELECT pk FROM candidates", " FOR UPDATE", "GREATEST"
    else:
        head, chosen, lock, later = "", candidates, "", "MAX"
    # The updated table has an alias of its own: the candidates' query names the table, and
    # its columns must mean the candidates' rows.
    sql = (
        f"{head}UPDATE {table} AS claimed SET status = %s, worker_id = %s, "
        f"start_date = {later}(%s, claimed.created_at), end_date = NULL, pid = NULL "
        f"WHERE claimed.id IN ({chosen}) AND claimed.status = %s AND EXISTS (SELECT 1 FROM "
        f"{workers} WHERE id = %s AND stopped_at IS NULL{lock}) "
        f"RETURNING {columns}"
    )
    update = [Status.RUNNING, worker.pk, connection.ops.adapt_datetimefield_value(timezone.now())]
    if head:  # the candidates' parameters come first
        params = [*params, *update, Status.SCHEDULED, worker.pk]
    else:
        params = [*update, *params, Status.SCHEDULED, worker.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    tasks = [_from_row(connection, fields, row) for row in rows]
    tasks.sort(key=lambda task: (-task.priority, task.pk))
    return tasks


def _from_row(connection: BaseDatabaseWrapper, fields: list[Any], row: tuple[Any, ...]) -> Task:
    values = []
    for field, value in zip(fields, row, strict=True):
        converters = connection.ops.get_db_converters(field.cached_col)
        for converter in converters + field.get_db_converters(connection):
            value = converter(value, field.cached_col, connection)
        values.append(value)
    task = Task.from_db(connection.alias, [field.attname for field in fields], values)
    if task.content_type_id is not None:  # from the cache: no query per task
        task.content_type = content_types().get_for_id(task.content_type_id)
    return task


def _claim_in_steps(
    connection: BaseDatabaseWrapper, worker: Worker, candidates: str, params: list[Any]
) -> list[Task]:
    """MySQL/MariaDB (no ``UPDATE ... RETURNING``): lock, select, update, read back."""
    with routing.atomic():
        # Our row, locked: see _claim_returning.
        if not Worker.objects.select_for_update().filter(pk=worker.pk, stopped_at=None).exists():
            return []
        with connection.cursor() as cursor:
            # Two daemons skip each other's rows instead of queueing behind them.
            cursor.execute(f"{candidates} FOR UPDATE SKIP LOCKED", params)
            ids = [pk for (pk,) in cursor.fetchall()]
        if not ids:
            return []
        # The start is read now, not before the candidates: a task committed after that
        # reading must not start before it was made.
        Task.objects.filter(pk__in=ids, status=Status.SCHEDULED).update(
            status=Status.RUNNING,
            worker=worker,
            start_date=timezone.now(),
            end_date=None,
            pid=None,
        )
        return list(
            Task.objects.filter(pk__in=ids, status=Status.RUNNING, worker=worker)
            .select_related("content_type")
            .order_by("-priority", "id")
        )


def record_pids(pids: dict[int, int]) -> None:
    """Store the process ids of started tasks (task id -> pid) in one plain statement: the
    daemon does this after every claim (``bulk_update()`` costs milliseconds of Python)."""
    if not pids:
        return
    connection = routing.connection()
    cases = " ".join("WHEN %s THEN %s" for _ in pids)
    marks = ", ".join("%s" for _ in pids)
    sql = (
        f"UPDATE {connection.ops.quote_name(Task._meta.db_table)} "
        f"SET pid = CASE id {cases} END WHERE id IN ({marks})"
    )
    params: list[int] = [value for pair in pids.items() for value in pair]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *pids])
