"""The rows of a ``django.tasks`` task seen as Django's ``TaskResult``, and its signals.

A result enqueued through the djangotasks backend is one ``Task`` row per attempt: they share
the result's id (``object_id``, with no object type) and the live key, and a retry archives
the failed attempt as for any task. The result's status is that of the latest attempt; its
errors and worker ids are those of every attempt, in order.

Needs Django's tasks framework (tasks_framework.py); only called for rows that the backend
created.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from djangotasks import exceptions
from djangotasks.logfields import fields
from djangotasks.models.transitions import error_record
from djangotasks.registry import UnknownTask, registry
from djangotasks.statuses import Status
from djangotasks.tasks_framework import (
    InvalidTask,
    TaskError,
    TaskResult,
    TaskResultStatus,
    task_finished,
    task_started,
)

if TYPE_CHECKING:
    from djangotasks.models import Task
    from djangotasks.tasks_framework import AnyResult, AnyTask

logger = logging.getLogger("djangotasks")

STATUSES: dict[str, TaskResultStatus] = {
    Status.DEFINED: TaskResultStatus.READY,
    Status.SCHEDULED: TaskResultStatus.READY,
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.REQUESTED_CANCEL: TaskResultStatus.RUNNING,
    Status.SUCCESSFUL: TaskResultStatus.SUCCESSFUL,
    Status.UNSUCCESSFUL: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}


def attempts_of(result_id: str) -> list[Task]:
    """The rows of a result, first attempt first; empty if there is no such result."""
    from djangotasks.models import Task

    if not isinstance(result_id, str) or not 0 < len(result_id) <= 255:
        return []
    return list(
        Task.objects.filter(content_type=None, object_id=result_id, arguments__isnull=False)
        .order_by("attempt", "id")
    )  # fmt: skip


def django_task_of(row: Task) -> AnyTask:
    """The ``django.tasks`` Task of a row, as it was enqueued (priority, queue, run_after)."""
    definition = registry.get(row.name)  # UnknownTask: not declared in this process
    task: AnyTask | None = definition.django_task
    if task is None:
        raise UnknownTask(row.name)
    if (task.priority, task.queue_name) == (row.priority, row.queue_name):
        return task
    try:
        return replace(task, priority=row.priority, queue_name=row.queue_name)
    except InvalidTask:
        return task  # a queue since removed from QUEUES: show the task as declared


def to_result(rows: list[Task], task: AnyTask | None = None) -> AnyResult:
    """The ``TaskResult`` of a result's rows (as returned by ``attempts_of``)."""
    first, last = rows[0], rows[-1]
    started = [row for row in rows if row.start_date is not None]
    arguments = first.arguments if isinstance(first.arguments, dict) else {}
    args, kwargs = first.call_arguments
    status = STATUSES.get(last.status, TaskResultStatus.FAILED)  # a status edited by hand
    result: AnyResult = TaskResult(
        task=task or django_task_of(first),
        id=first.object_id,
        status=status,
        enqueued_at=first.created_at,
        started_at=started[0].start_date if started else None,
        finished_at=last.end_date if status in (TaskResultStatus.SUCCESSFUL,
                                                 TaskResultStatus.FAILED) else None,
        last_attempted_at=started[-1].start_date if started else None,
        args=args,
        kwargs=kwargs,
        backend=str(arguments.get("backend") or "default"),
        errors=[error_of(row) for row in rows if row.status in STATUSES_FAILED],
        worker_ids=[str(row.worker_id or "") for row in started],
    )  # fmt: skip
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", last.result)
    return result


STATUSES_FAILED = (Status.UNSUCCESSFUL, Status.CANCELLED)


def error_of(row: Task) -> TaskError:
    """The ``TaskError`` of a failed attempt: as recorded, or told by its status."""
    error = row.error
    if isinstance(error, dict):
        path, text = error.get("exception_class_path"), error.get("traceback")
        if isinstance(path, str) and path and isinstance(text, str):
            return TaskError(exception_class_path=path, traceback=text)
    cls = exceptions.TaskCancelled if row.status == Status.CANCELLED else exceptions.TaskFailed
    return TaskError(**error_record(cls, row.reason))


# -- signals, sent by the daemon ----------------------------------------------------------


def send_started(row: Task) -> None:
    """``django.tasks``' ``task_started`` for a row the daemon just started."""
    _send(task_started, row, "task_started")


def send_finished(row: Task) -> None:
    """``task_finished`` once a result is final (not when a retry was scheduled)."""
    if not row.archived:  # a retry archives the failed attempt: the result goes on
        _send(task_finished, row, "task_finished")


def _send(signal: Any, row: Task, name: str) -> None:
    from djangotasks.backend import ProcessBackend

    try:
        # The first attempt is the row itself: no query on the common path.
        rows = [row] if row.attempt == 1 else attempts_of(row.object_id)
        result = to_result(rows or [row])
    except Exception as exc:  # code removed since, rows edited by hand: log, never fail
        logger.warning("%s not sent for task #%s: %s", name, row.pk, exc,
                       extra=fields("signal_not_sent", row, signal=name))  # fmt: skip
        return
    for receiver, response in signal.send_robust(ProcessBackend, task_result=result):
        if isinstance(response, Exception):
            logger.error("%s receiver %r failed for task #%s", name, receiver, row.pk,
                         exc_info=response,
                         extra=fields("receiver_failed", row, signal=name))  # fmt: skip
