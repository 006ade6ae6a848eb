"""djangotasks as a backend of Django's tasks framework (Django >= 6.0, or the django-tasks
backport on Django 5.2: see tasks_framework.py).

    TASKS = {"default": {"BACKEND": "djangotasks.backend.ProcessBackend",
                         "QUEUES": ["default", "reports"],
                         "OPTIONS": {"timeout": 3600, "retries": 2}}}

Tasks written with ``django.tasks.task`` and ``.enqueue(...)`` run in the djangotasks daemon,
each in its own process, with a live log, cancel, timeouts, memory limits, retries, progress
(``current_task.set_progress``), recovery and the admin. ``OPTIONS`` gives the defaults of
``timeout``, ``memory_limit``, ``retries`` and ``retry_delay``; on Django >= 6.1 each task may
set its own: ``@task(timeout=600, retries=3)``.

The daemon runs only what was declared with ``@task`` for this backend, found by its module
path in the registry (each app's ``tasks.py`` is imported in every process): it never
imports a path read from the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from django.apps import apps
from django.core import checks

from djangotasks import notify, results, routing
from djangotasks.decorators import check_options
from djangotasks.jsonvalues import to_json
from djangotasks.models import Task
from djangotasks.models.rows import insert_row
from djangotasks.models.scheduling import CHUNK, announce_scheduled
from djangotasks.models.task import live_key
from djangotasks.models.transitions import cancel as cancel_row
from djangotasks.registry import TaskDefinition, registry
from djangotasks.statuses import Status
from djangotasks.tasks_framework import (
    BaseTaskBackend,
    InvalidTask,
    TaskResultDoesNotExist,
    task_backends,
    task_enqueued,
)
from djangotasks.tasks_framework import Task as DjangoTask

if TYPE_CHECKING:
    from djangotasks.tasks_framework import AnyResult, AnyTask

# The options a backend's OPTIONS may default and (Django >= 6.1) a task may set.
OPTIONS = ("timeout", "memory_limit", "retries", "retry_delay")
MAX_QUEUE_NAME = 100  # Task.queue_name


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessTask(DjangoTask):  # type: ignore[type-arg]
    """The ``task_class`` of ``ProcessBackend``: Django's Task with djangotasks' options."""

    timeout: float | None = None
    memory_limit: int | None = None
    retries: int | None = None
    retry_delay: float | None = None

    def __post_init__(self) -> None:
        # Explicit: zero-argument super() fails in a dataclass with slots.
        DjangoTask.__post_init__(self)
        _register(self)


def _register(task: ProcessTask) -> None:
    name = task.module_path
    backend_options = task.get_backend().options
    options = dict(backend_options) if isinstance(backend_options, dict) else {}
    options.update({key: getattr(task, key) for key in OPTIONS if getattr(task, key) is not None})
    options = {key: value for key, value in options.items() if key in OPTIONS}
    try:
        check_options(options)
    except TypeError as exc:
        raise InvalidTask(str(exc).replace("@task", f"@task {name}")) from None
    if name in registry:
        current = registry.get(name)
        if current.django_task is not None and current.func is task.func:
            return  # a variant made by .using(): the declared task stays registered
    registry.register(
        TaskDefinition(
            name=name,
            func=task.func,
            label=task.func.__name__.replace("_", " ").strip().capitalize(),
            priority=task.priority,
            queue=task.queue_name,
            django_task=task,
            **options,
        )
    )


class ProcessBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks in the djangotasks daemon, each in its own process."""

    task_class = ProcessTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: AnyTask) -> None:
        super().validate_task(task)
        if len(task.queue_name) > MAX_QUEUE_NAME:
            raise InvalidTask(f"Queue names are at most {MAX_QUEUE_NAME} characters.")

    @routing.deadlock_retried
    def enqueue(self, task: AnyTask, args: Any, kwargs: Any) -> AnyResult:
        self.validate_task(task)
        row = self._row(task, args, kwargs)
        # Inside the caller's transaction, if any: the daemons see the row (and, on
        # PostgreSQL, the notification) only once it commits, and never if it rolls back.
        # Outside one, the INSERT commits by itself: a new result id conflicts with nothing.
        insert_row(row)
        notify.wake_workers("run", routing.alias())
        announce_scheduled(row)
        result = results.to_result([row], task)
        task_enqueued.send(type(self), task_result=result)
        return result

    @routing.deadlock_retried
    def enqueue_many(self, calls: list[tuple[AnyTask, Any, Any]]) -> list[AnyResult]:
        """Enqueue many ``(task, args, kwargs)`` in one transaction, a bulk INSERT per
        ``CHUNK`` rows ("Run again" on many results)."""
        for task, _args, _kwargs in calls:
            self.validate_task(task)
        rows = [self._row(task, args, kwargs) for task, args, kwargs in calls]
        with routing.atomic():
            Task.objects.bulk_create(rows, batch_size=CHUNK)
            if rows:
                notify.wake_workers("run", routing.alias())
        found = {row.object_id: row for row in rows}
        if any(row.pk is None for row in rows):  # MySQL returns no ids from a bulk INSERT
            fresh = Task.objects.filter(object_id__in=list(found), content_type=None)
            found = {row.object_id: row for row in fresh}
        enqueued = []
        for (task, _args, _kwargs), row in zip(calls, rows, strict=True):
            saved = found[row.object_id]
            announce_scheduled(saved)
            result = results.to_result([saved], task)
            task_enqueued.send(type(self), task_result=result)
            enqueued.append(result)
        return enqueued

    def _row(self, task: AnyTask, args: Any, kwargs: Any) -> Task:
        """The unsaved row of one enqueue: its own result id, its arguments as JSON."""
        definition = registry.get(task.module_path) if task.module_path in registry else None
        if definition is None or definition.django_task is None:
            raise InvalidTask(
                f"{task.module_path} was not declared for the djangotasks backend: decorate "
                f"it with django.tasks.task (backend={task.backend!r} uses "
                f"{type(task).__name__}, not ProcessTask) in a module every process imports, "
                "such as an app's tasks.py."
            )
        arguments = {
            "args": to_json(list(args), "Task arguments", "args"),
            "kwargs": to_json(dict(kwargs), "Task arguments", "kwargs"),
            "backend": self.alias,
        }
        result_id = str(uuid4())
        return Task(
            name=task.module_path,
            object_id=result_id,
            live_key=live_key(task.module_path, result_id),
            status=Status.SCHEDULED,
            priority=task.priority,
            queue_name=task.queue_name,
            run_after=task.run_after,
            arguments=arguments,
        )

    def get_result(self, result_id: str) -> AnyResult:
        rows = results.attempts_of(result_id)
        if not rows:
            raise TaskResultDoesNotExist(result_id)
        return results.to_result(rows)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages: list[checks.CheckMessage] = list(super().check(**kwargs))
        where = f"TASKS[{self.alias!r}]"
        if not apps.is_installed("djangotasks"):
            messages.append(
                checks.Error(
                    f"{where} uses djangotasks.backend.ProcessBackend, but djangotasks is not "
                    "in INSTALLED_APPS.",
                    hint="Add 'djangotasks' to INSTALLED_APPS.",
                    id="djangotasks.E010",
                )
            )
        if not isinstance(self.options, dict):
            return [*messages, _option_error(f"{where}['OPTIONS'] must be a dict.")]
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            messages.append(
                _option_error(
                    f"{where}['OPTIONS'] has unknown key(s) {', '.join(map(repr, unknown))}; "
                    f"known: {', '.join(OPTIONS)}."
                )
            )
        try:
            check_options({k: v for k, v in self.options.items() if k in OPTIONS})
        except TypeError as exc:
            messages.append(_option_error(f"{where}['OPTIONS']: {exc}".replace("@task", "")))
        bad = [q for q in self.queues if not isinstance(q, str) or not 0 < len(q) <= 100]
        if bad:
            messages.append(
                checks.Error(
                    f"{where}['QUEUES'] must hold names of 1 to {MAX_QUEUE_NAME} characters, "
                    f"not {', '.join(map(repr, bad))}.",
                    id="djangotasks.E012",
                )
            )
        return messages


def _option_error(text: str) -> checks.Error:
    return checks.Error(text, id="djangotasks.E011")


# -- the small API around a result ------------------------------------------------------


def task_of(result: AnyResult | str) -> Task:
    """The ``Task`` row of a result's latest attempt (its log, progress, admin page)."""
    result_id = result if isinstance(result, str) else result.id
    rows = results.attempts_of(result_id)
    if not rows:
        raise TaskResultDoesNotExist(result_id)
    return rows[-1]


def cancel(result: AnyResult | str) -> Task:
    """Cancel a result: a ready one at once, a running one by killing its process group.

    Raises ``InvalidTransition`` if it already finished. Returns the row that was cancelled.
    """
    row = task_of(result)
    cancel_row(row)
    return row


def enqueue_again(row: Task) -> Task:
    """Enqueue the task of ``row`` again with the same arguments ("Run again")."""
    return enqueue_again_many([row])[0]


def enqueue_again_many(rows: list[Task]) -> list[Task]:
    """Enqueue the tasks of ``rows`` again, with their arguments, in one transaction per
    backend; returns the new rows in the same order."""
    by_backend: dict[str, list[tuple[int, tuple[AnyTask, Any, Any]]]] = {}
    for index, row in enumerate(rows):
        task = results.django_task_of(row)
        args, kwargs = row.call_arguments
        arguments = row.arguments if isinstance(row.arguments, dict) else {}
        alias = str(arguments.get("backend") or task.backend)
        by_backend.setdefault(alias, []).append((index, (task, args, kwargs)))
    again: dict[int, Task] = {}
    for alias, calls in by_backend.items():
        backend = task_backends[alias]
        if not isinstance(backend, ProcessBackend):
            raise InvalidTask(f"TASKS[{alias!r}] is no longer a djangotasks backend.")
        enqueued = backend.enqueue_many([call for _index, call in calls])
        for (index, _call), result in zip(calls, enqueued, strict=True):
            again[index] = task_of(result)
    return [again[index] for index in range(len(rows))]


__all__ = [
    "ProcessBackend",
    "ProcessTask",
    "cancel",
    "enqueue_again",
    "enqueue_again_many",
    "task_of",
]
