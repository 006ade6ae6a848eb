"""The structured fields of the daemon's log records: what an operator's tools filter on.

Every line the daemon logs is given ``extra=fields(event, task, ...)``:

- ``event``: what happened, a stable snake_case name ("task_started", "task_finished",
  "daemon_started", "database_unavailable", ...). Messages may be reworded; events are not.
- ``worker``, ``worker_id``: the daemon that logged it (``Worker`` as "host:pid", and its
  row's id, unique per start), on every line its thread logs once it has registered.
- ``task_id``, ``task_name``: the task it is about, if any.
- ``outcome`` (see outcomes.py): only on the one line that records the end of a task.

Text logs show the message only; ``djangotasks.logformat.JsonFormatter`` writes every field.
A task name comes from a row and is kept as it is: the formatter escapes what it writes.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from djangotasks.outcomes import outcome

if TYPE_CHECKING:
    from djangotasks.models import Task, Worker

logger = logging.getLogger("djangotasks")

# Per thread: what the daemon's thread sets is not seen by the web threads beside it (in
# thread mode), whose records name no worker.
_worker: ContextVar[tuple[str, int] | None] = ContextVar("djangotasks_log_worker", default=None)


def log_as(worker: Worker | None) -> None:
    """Name ``worker`` in every record this thread logs with ``fields()`` (None: no more)."""
    _worker.set(None if worker is None else (str(worker), worker.pk))


def fields(
    event: str, task: Task | None = None, *, worker: Worker | None = None, **more: Any
) -> dict[str, Any]:
    """The ``extra`` of a log record: ``event``, the worker (this thread's, unless given),
    ``task``'s id and name, and ``more`` (those that are None are left out)."""
    record: dict[str, Any] = {"event": event}
    named = (str(worker), worker.pk) if worker is not None else _worker.get()
    if named is not None:
        record["worker"], record["worker_id"] = named
    if task is not None:
        record["task_id"] = task.pk
        record["task_name"] = task.name
    record.update((key, value) for key, value in more.items() if value is not None)
    return record


def log_finished(task: Task, **more: Any) -> None:
    """Log the end of ``task`` as it was just recorded: the one "task_finished" line of each
    end (a daemon's task, one it could not start, one recovered as lost), with its outcome."""
    reason = f": {task.reason}" if task.reason else ""
    logger.info("task #%s %s %s%s", task.pk, task.name, task.status, reason,
                extra=fields("task_finished", task, outcome=outcome(task), **more))  # fmt: skip
