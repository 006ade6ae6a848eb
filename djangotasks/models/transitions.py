"""Every status change of a task, each one conditional UPDATE (compare-and-set).

Views, commands and the daemon call these functions and never write ``status`` themselves,
so two daemons, a cancel and a finish can never overwrite each other: whoever's UPDATE
matches the expected status wins, the others see 0 rows and re-read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import models
from django.utils import timezone

from djangotasks import notify, routing, signals, tallies
from djangotasks.exceptions import DependencyFailed, InvalidTransition
from djangotasks.logfields import fields
from djangotasks.models.task import Task
from djangotasks.models.worker import Worker
from djangotasks.statuses import FAILED, FINISHED, Status

logger = logging.getLogger("djangotasks")

# Compare-and-set loops retry when another process changed the row in between; more than a
# handful of rounds means something keeps rewriting the row, which is a bug worth an error.
MAX_CAS_ROUNDS = 10


def error_record(cls: type[BaseException], text: str) -> dict[str, str]:
    """What ``Task.error`` holds: a failed attempt as Django's ``TaskError`` (its class path
    says how it failed: djangotasks.exceptions.TaskTimedOut, WorkerLost, ...)."""
    return {"exception_class_path": f"{cls.__module__}.{cls.__qualname__}", "traceback": text}


def _announce(task: Task, old: str, new: str) -> None:
    tallies.observe(task, old, new)  # counted with the change (in its transaction, if any)

    # Listeners must never see a change that a rollback undid, so send after commit. A
    # receiver that raises is the project's bug, not a reason to fail what was committed
    # (in the daemon: a claim would be left without its processes, again and again).
    def send() -> None:
        responses = signals.task_status_changed.send_robust(
            Task, task=task, old_status=old, new_status=new
        )
        for receiver, result in responses:
            if isinstance(result, Exception):
                logger.error("task_status_changed receiver %r failed for task #%s", receiver,
                             task.pk, exc_info=result,
                             extra=fields("receiver_failed", task,
                                          signal="task_status_changed"))  # fmt: skip

    if signals.task_status_changed.has_listeners():
        routing.on_commit(send)


def _cas(
    task: Task,
    expected: Iterable[str],
    new: str,
    where: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Set ``task``'s status to ``new`` if it is still one of ``expected`` (and matches
    ``where``); True if it was."""
    expected = list(expected)
    changed = _update_row(task.pk, expected, where or {}, {"status": new, **fields})
    if changed:
        # With one expected status, that is what the row had (whatever we last saw).
        old = expected[0] if len(expected) == 1 else task.status
        task.status = new
        for name, value in fields.items():
            setattr(task, name, value)
        _announce(task, old, new)
    return bool(changed)


def _update_row(pk: int, statuses: list[str], where: dict[str, Any], values: dict[str, Any]) -> int:
    """``UPDATE`` one task row if its status is one of ``statuses`` and its fields match
    ``where``; the number of rows changed.

    Every status change goes through here, the daemon's finish of each task among them:
    written as one plain statement, it costs a tenth of the Python of ``QuerySet.update()``.
    """
    connection = routing.connection()
    quote = connection.ops.quote_name
    meta = Task._meta
    sets, conditions, params = [], [], []
    for name, value in values.items():
        field = _field(name)
        sets.append(f"{quote(str(field.column))} = %s")
        params.append(field.get_db_prep_save(value, connection))
    conditions.append(f"{quote(str(_field('id').column))} = %s")
    params.append(pk)
    conditions.append(
        f"{quote(str(_field('status').column))} IN ({', '.join('%s' for _ in statuses)})"
    )
    params.extend(statuses)
    for name, value in where.items():
        conditions.append(f"{quote(str(_field(name).column))} = %s")
        params.append(value.pk if isinstance(value, models.Model) else value)
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(sets)} WHERE {' AND '.join(conditions)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _field(name: str) -> models.Field[Any, Any]:
    field = Task._meta.get_field(name)
    assert isinstance(field, models.Field), name
    return field


def archive(task: Task) -> bool:
    """Turn a finished live row into history, if nobody did so meanwhile."""
    archived = Task.objects.filter(pk=task.pk, live_key=task.live_key, status=task.status).update(
        live_key=None, archived=True
    )
    if archived:
        task.live_key, task.archived = None, True
    return bool(archived)


# -- cancelling --------------------------------------------------------------------------


@routing.deadlock_retried
def cancel(task: Task) -> None:
    if task.pk is None:
        raise InvalidTransition(f"{task.label} has never been run; there is nothing to cancel.")
    # What a compare-and-set changes in memory, put back if its transaction is then lost (a
    # deadlock in fail_dependents): a second attempt starts from what the row still holds.
    before = (task.status, task.end_date, task.reason)
    try:
        _cancel(task)
    except BaseException:
        task.status, task.end_date, task.reason = before
        raise


def _cancel(task: Task) -> None:
    for _round in range(MAX_CAS_ROUNDS):
        if task.status not in Status.values:
            raise InvalidTransition(
                f"Task #{task.pk} has the unknown status {task.status!r} (edited by hand?); "
                "it cannot be cancelled. Run the task again to replace it."
            )
        if task.status == Status.REQUESTED_CANCEL:
            return
        if task.status in FINISHED:
            raise InvalidTransition(
                f"Task #{task.pk} ({task.label}) already finished ({task.status}); "
                "there is nothing to cancel."
            )
        if task.status == Status.SCHEDULED:
            with routing.atomic():
                if _cas(
                    task,
                    [Status.SCHEDULED],
                    Status.CANCELLED,
                    end_date=timezone.now(),
                    reason="Cancelled before it started.",
                ):
                    fail_dependents([task])
                    return
        elif task.status == Status.RUNNING:
            with routing.atomic():
                if _cas(task, [Status.RUNNING], Status.REQUESTED_CANCEL):
                    # The owning daemon kills the process group; it records "cancelled"
                    # only once the processes are gone.
                    notify.wake_workers(f"cancel {task.pk}", routing.alias())
                    return
        task.refresh_from_db(fields=["status"])
    raise RuntimeError(f"Could not cancel task #{task.pk}: its status kept changing")


# -- the daemon's side -------------------------------------------------------------------


def finish(
    task: Task,
    worker: Worker,
    status: str,
    reason: str = "",
    log_size: int | None = None,
    error: dict[str, str] | None = None,
) -> bool:
    """Record the end of a task this worker ran. False if it was no longer this worker's.

    A failure of a task that allows retries schedules the next attempt, unless someone asked
    to cancel it; any other failure fails the tasks waiting on it. ``error``: what failed it,
    as a ``TaskError`` of Django's tasks framework (see results.py). A return value is
    stored by the task process itself, before it exits.
    """
    assert status in FINISHED, status
    fields: dict[str, Any] = {"reason": reason, "end_date": timezone.now()}
    if error is not None:
        fields["error"] = error
    if log_size is not None:
        fields["log_size"] = log_size
    # The status we expect first: what the daemon last saw. A cancel may have come in since.
    expected = [Status.RUNNING, Status.REQUESTED_CANCEL]
    if task.status == Status.REQUESTED_CANCEL:
        expected.reverse()
    # A success changes one row and nothing else: one autocommit UPDATE, no transaction
    # (this runs once per task in the daemon's loop). A failure may cascade: atomically.
    with routing.atomic() if status in FAILED else contextlib.nullcontext():
        for old in expected:
            # Conditional on the exact status, so we know whether a cancel was asked for.
            if _cas(task, [old], status, where={"worker": worker}, **fields):
                break
        else:
            return False
        _after_failure(task, status, retry=old != Status.REQUESTED_CANCEL)
    return True


def _after_failure(task: Task, status: str, retry: bool = True) -> None:
    if status == Status.UNSUCCESSFUL and retry and _retry(task):
        return
    if status in FAILED:
        fail_dependents([task])


def _retry(task: Task) -> bool:
    definition = task.definition
    if definition is None or task.attempt > definition.retries or task.live_key is None:
        return False
    key = task.live_key  # the retry takes it over once this attempt is archived
    if not archive(task):
        return False
    delay = definition.retry_delay * (2 ** (task.attempt - 1))
    retry = Task.objects.create(
        name=task.name,
        content_type_id=task.content_type_id,
        object_id=task.object_id,
        live_key=key,
        status=Status.SCHEDULED,
        priority=task.priority,
        queue_name=task.queue_name,
        arguments=task.arguments,
        attempt=task.attempt + 1,
        run_after=timezone.now() + timedelta(seconds=delay),
    )
    retry.dependencies.set(task.dependencies.all())
    # Tasks that waited on the failed attempt wait on the retry instead.
    Task.dependencies.through.objects.filter(to_task=task).update(to_task=retry)
    _announce(retry, Status.DEFINED, Status.SCHEDULED)
    logger.info(
        "task #%s (%s) failed; attempt %s of %s scheduled as task #%s in %.0f s",
        task.pk, task.name, retry.attempt, definition.retries + 1, retry.pk, delay,
        extra=fields("task_retry_scheduled", task, retry_task_id=retry.pk, attempt=retry.attempt),
    )  # fmt: skip
    return True


def fail_dependents(failed: list[Task], outcome: str = "") -> None:
    """Fail every scheduled task that waits (directly or not) on a failed or cancelled one.

    ``outcome`` says what became of ``failed`` when their status does not ("was deleted").
    """
    while failed:
        next_round = []
        for dependency in failed:
            happened = outcome or (
                dependency.get_status_display().lower()
                + (f": {dependency.reason}" if dependency.reason else ".")
            )
            reason = f"Dependency {dependency.label!r} (task #{dependency.pk}) {happened}"
            waiting = Task.objects.filter(status=Status.SCHEDULED, dependencies=dependency)
            for dependent in waiting:
                if _cas(
                    dependent,
                    [Status.SCHEDULED],
                    Status.UNSUCCESSFUL,
                    end_date=timezone.now(),
                    reason=reason,
                    error=error_record(DependencyFailed, reason),
                ):
                    next_round.append(dependent)
        failed, outcome = next_round, ""


def fail_dependents_of_deleted(sender: type[Task], instance: Task, **kwargs: Any) -> None:
    """``pre_delete`` of a Task: whatever waits on it fails instead of running without it.

    The dependency link is deleted with the row, and a task with no unfinished dependency
    is claimable: without this, deleting a scheduled task (admin, shell, a cascade) would let
    its dependents run early. A successful dependency was no longer waited for.
    """
    if instance.pk is not None and instance.status != Status.SUCCESSFUL:
        fail_dependents([instance], "was deleted.")


def fail_orphaned_dependents() -> int:
    """Safety net: fail scheduled tasks whose dependency failed without cascading.

    A crash between a dependency's failure and its cascade would otherwise leave them
    scheduled forever.
    """
    dependencies = list(
        Task.objects.filter(status__in=FAILED, dependents__status=Status.SCHEDULED).distinct()
    )
    fail_dependents(dependencies)
    return len(dependencies)


__all__ = [
    "archive",
    "cancel",
    "fail_dependents",
    "fail_orphaned_dependents",
    "finish",
]
