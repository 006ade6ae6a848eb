"""Every status change of a task, each one conditional UPDATE (compare-and-set).

Views, commands and the daemon call these functions and never write ``status`` themselves,
so two daemons, a cancel and a finish can never overwrite each other: whoever's UPDATE
matches the expected status wins, the others see 0 rows and re-read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError
from django.utils import timezone

from djangotasks import notify, routing, signals
from djangotasks.exceptions import DependencyFailed, InvalidTransition
from djangotasks.models.task import Task, live_key
from djangotasks.models.worker import Worker
from djangotasks.registry import TaskDefinition
from djangotasks.statuses import FAILED, FINISHED, PENDING, Status

if TYPE_CHECKING:
    from django.db.models import Model

logger = logging.getLogger("djangotasks")

# Compare-and-set loops retry when another process changed the row in between; more than a
# handful of rounds means something keeps rewriting the row, which is a bug worth an error.
MAX_CAS_ROUNDS = 10


def error_record(cls: type[BaseException], text: str) -> dict[str, str]:
    """What ``Task.error`` holds: a failed attempt as Django's ``TaskError`` (its class path
    says how it failed: djangotasks.exceptions.TaskTimedOut, WorkerLost, ...)."""
    return {"exception_class_path": f"{cls.__module__}.{cls.__qualname__}", "traceback": text}


def _announce(task: Task, old: str, new: str) -> None:
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
                             task.pk, exc_info=result)  # fmt: skip

    if signals.task_status_changed.has_listeners():
        routing.on_commit(send)


def _cas(task: Task, expected: Iterable[str], new: str, **fields: Any) -> bool:
    """Set ``task``'s status to ``new`` if it is still one of ``expected``; True if it was."""
    changed = Task.objects.filter(pk=task.pk, status__in=list(expected)).update(
        status=new, **fields
    )
    if changed:
        old = task.status
        task.status = new
        for name, value in fields.items():
            setattr(task, name, value)
        _announce(task, old, new)
    return bool(changed)


# -- scheduling --------------------------------------------------------------------------


def schedule(definition: TaskDefinition, target: Model | None) -> Task:
    """Schedule ``definition`` on ``target`` after its dependencies; return the live Task."""
    if definition.takes_arguments:
        # Without its arguments it would run as f(): refused rather than failing later.
        raise InvalidTransition(
            f"{definition.name} is a task of Django's tasks framework: it runs with its "
            'arguments, through its .enqueue(...) (or "Run again" on one of its results).'
        )
    with routing.atomic():
        task = _schedule(definition, target)
        notify.wake_workers("run", routing.alias())
    return task


def _schedule(definition: TaskDefinition, target: Model | None) -> Task:
    dependencies = []
    for dependency in definition.dependency_definitions():
        dependency_target = target if dependency.is_method else None
        current = dependency.current(dependency_target)
        if current.status != Status.SUCCESSFUL:
            current = _schedule(dependency, dependency_target)
        dependencies.append(current)
    return _create_or_get_live(definition, target, dependencies)


def _create_or_get_live(
    definition: TaskDefinition, target: Model | None, dependencies: list[Task]
) -> Task:
    for _round in range(MAX_CAS_ROUNDS):
        current = definition.current(target)  # the live row, or an unsaved "defined" one
        if current.pk is not None:
            if current.status == Status.REQUESTED_CANCEL:
                raise InvalidTransition(
                    f"Task #{current.pk} ({current.label}) is being cancelled; run it again "
                    "once it has stopped."
                )
            if current.status in PENDING:
                return current
            if not _archive(current):
                continue  # someone else archived or changed it meanwhile: look again
        task = Task(
            name=definition.name,
            content_type=current.content_type,
            object_id=current.object_id,
            live_key=live_key(definition.name, current.object_id),
            status=Status.SCHEDULED,
            priority=definition.priority,
            queue_name=definition.queue,
        )
        try:
            with routing.atomic():
                task.save()
                task.dependencies.set(dependencies)
        except IntegrityError:
            continue  # a concurrent run() created the live row first: return that one
        if target is not None:
            task.__dict__["target"] = target
        _announce(task, Status.DEFINED, Status.SCHEDULED)
        return task
    raise RuntimeError(f"Could not schedule {definition.name}: the live row kept changing")


def announce_scheduled(task: Task) -> None:
    """Tell ``task_status_changed`` listeners about a row created scheduled."""
    _announce(task, Status.DEFINED, Status.SCHEDULED)


def _archive(task: Task) -> bool:
    """Turn a finished live row into history, if nobody did so meanwhile."""
    archived = Task.objects.filter(pk=task.pk, live_key=task.live_key, status=task.status).update(
        live_key=None, archived=True
    )
    if archived:
        task.live_key, task.archived = None, True
    return bool(archived)


# -- cancelling --------------------------------------------------------------------------


def cancel(task: Task) -> None:
    if task.pk is None:
        raise InvalidTransition(f"{task.label} has never been run; there is nothing to cancel.")
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


def claim(worker: Worker, limit: int, queues: Collection[str] | None = None) -> list[Task]:
    """Atomically take up to ``limit`` runnable tasks for ``worker``: priority, then FIFO.

    ``queues``: only tasks of these queues (None: of every queue).
    """
    connection = routing.connection()
    if limit <= 0:
        return []
    now = timezone.now()
    claimable = Task.objects.in_queues(queues).claimable(now)
    if connection.vendor == "sqlite" and not claimable.exists():
        # On SQLite the IMMEDIATE transaction below takes the database's only write lock, and
        # daemons look here on every change to the file (another daemon's heartbeat, a line
        # of output): a plain read first keeps them from queueing writers for nothing.
        return []
    with routing.atomic():
        # Our row, locked: a daemon declared lost (fenced by another) claims nothing more,
        # and one that fences us waits until this claim is committed, then ends it too.
        if not Worker.objects.select_for_update().filter(pk=worker.pk, stopped_at=None).exists():
            return []
        candidates = claimable.order_by("-priority", "id")
        if connection.features.has_select_for_update_skip_locked:
            # Two daemons skip each other's rows instead of queueing behind them.
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        # On SQLite there are no row locks; the status condition makes the update a CAS, and
        # the IMMEDIATE transaction serialises claimers. The start is read now, not at the
        # top: a task committed after that first reading must not start before it was made.
        Task.objects.filter(pk__in=ids, status=Status.SCHEDULED).update(
            status=Status.RUNNING,
            worker=worker,
            start_date=timezone.now(),
            end_date=None,
            pid=None,
        )
        tasks = list(
            Task.objects.filter(pk__in=ids, status=Status.RUNNING, worker=worker)
            .select_related("content_type")
            .order_by("-priority", "id")
        )
        for task in tasks:
            _announce(task, Status.SCHEDULED, Status.RUNNING)
    return tasks


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
    fields: dict[str, Any] = {"status": status, "reason": reason, "end_date": timezone.now()}
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
            if Task.objects.filter(pk=task.pk, worker=worker, status=old).update(**fields):
                break
        else:
            return False
        for name, value in fields.items():
            setattr(task, name, value)
        _announce(task, old, status)
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
    if not _archive(task):
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
    "cancel",
    "claim",
    "fail_dependents",
    "fail_orphaned_dependents",
    "finish",
    "schedule",
]
