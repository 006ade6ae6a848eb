"""The ``Task`` model: one run of one task on one object (or of one function)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.contrib.contenttypes.models import ContentType, ContentTypeManager
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from djangotasks.registry import TaskDefinition, UnknownTask, registry
from djangotasks.statuses import ACTIVE, FAILED, FINISHED, Status

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from datetime import datetime

# Tasks deleted per transaction by TaskQuerySet.delete_in_batches().
DELETE_BATCH = 500


class Progress(NamedTuple):
    current: int | None
    total: int | None
    message: str

    @property
    def percent(self) -> float | None:
        if self.current is None or not self.total:
            return None
        return max(0.0, min(100.0, 100.0 * self.current / self.total))


def content_types() -> ContentTypeManager:
    """Content types as stored in the tasks' database (which a router may choose): the id a
    Task row refers to must exist where the row is."""
    from djangotasks import routing

    return ContentType.objects.db_manager(routing.alias())


def live_key(name: str, object_id: str) -> str:
    """The value of the unique ``live_key`` column for the live task of (name, object)."""
    return hashlib.sha256(f"{name}\x00{object_id}".encode()).hexdigest()


class TaskQuerySet(models.QuerySet["Task"]):
    def live(self) -> TaskQuerySet:
        return self.filter(archived=False)

    def archived(self) -> TaskQuerySet:
        return self.filter(archived=True)

    def scheduled(self) -> TaskQuerySet:
        return self.filter(status=Status.SCHEDULED)

    def running(self) -> TaskQuerySet:
        return self.filter(status__in=ACTIVE)

    def finished(self) -> TaskQuerySet:
        return self.filter(status__in=FINISHED)

    def failed(self) -> TaskQuerySet:
        return self.filter(status__in=FAILED)

    def for_object(self, obj: models.Model) -> TaskQuerySet:
        return self.filter(content_type=content_types().get_for_model(obj), object_id=str(obj.pk))

    def delete_in_batches(
        self, batch: int = DELETE_BATCH, progress: Callable[[int], object] | None = None
    ) -> int:
        """Delete these tasks and their logs, a batch per transaction: memory and lock time
        stay bounded however many there are (a long task has thousands of log chunks)."""
        from djangotasks import routing

        deleted = 0
        while True:
            ids = list(self.order_by().values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            with routing.atomic():
                Task.objects.filter(pk__in=ids).delete()
            deleted += len(ids)
            if progress is not None:
                progress(deleted)

    def queue_depths(self) -> dict[str, int]:
        """How many of these tasks each queue holds, by queue name."""
        rows = self.order_by().values_list("queue_name").annotate(n=models.Count("id"))
        return dict(sorted(rows))

    def run(self) -> list[Task]:
        """Run every task of this queryset again, as ``task.run()`` does, in one transaction
        with a bounded number of statements; returns their live tasks, in order."""
        from djangotasks.models import scheduling

        return scheduling.run_again(list(self.select_related("content_type")))

    def in_queues(self, queues: Collection[str] | None) -> TaskQuerySet:
        """Tasks of these queues (None: of every queue)."""
        return self if queues is None else self.filter(queue_name__in=list(queues))

    def claimable(self, now: datetime) -> TaskQuerySet:
        """Scheduled, due, and every dependency successful: what a daemon may start now."""
        waiting = Task.dependencies.through.objects.filter(from_task=OuterRef("pk")).exclude(
            to_task__status=Status.SUCCESSFUL
        )
        return self.filter(
            Q(run_after__isnull=True) | Q(run_after__lte=now),
            status=Status.SCHEDULED,
        ).exclude(Exists(waiting))


class _TaskManager(models.Manager["Task"]):
    def current(self, definition: TaskDefinition, obj: models.Model | None) -> Task:
        """The live task of ``definition`` for ``obj``; an unsaved ``defined`` one if none.

        Reading never writes: the row is only created by ``run()``.
        """
        placeholder = self.model.placeholder(definition, obj)
        key = live_key(definition.name, placeholder.object_id)
        existing: Task | None = self.filter(live_key=key).first()
        if existing is None:
            return placeholder
        existing.set_target(placeholder.target)
        return existing


TaskManager = _TaskManager.from_queryset(TaskQuerySet)


class Task(models.Model):
    """A task run. The live row per (task, object) is unique; earlier runs are archived."""

    name = models.CharField(_("task"), max_length=255, db_index=True)
    content_type = models.ForeignKey(
        ContentType, models.CASCADE, null=True, blank=True, verbose_name=_("object type")
    )
    object_id = models.CharField(_("object id"), max_length=255, blank=True, default="")
    # sha256(name, object_id) while the row is the live run of its (task, object); NULL once
    # archived. A unique index on a nullable column is the one "one live row" guarantee that
    # PostgreSQL, MySQL/MariaDB and SQLite all enforce (MySQL has no partial unique index).
    live_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    archived = models.BooleanField(_("archived"), default=False)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.DEFINED
    )
    reason = models.TextField(_("reason"), blank=True, help_text=_("Why it ended this way."))
    priority = models.IntegerField(_("priority"), default=0)
    queue_name = models.CharField(_("queue"), max_length=100, default="default")
    run_after = models.DateTimeField(_("run after"), null=True, blank=True)
    attempt = models.PositiveIntegerField(_("attempt"), default=1)
    # Arguments ({"args", "kwargs", "backend"}) and return value of tasks enqueued through
    # Django's tasks framework: such a row's object_id is its result's id (no object type).
    arguments = models.JSONField(_("arguments"), null=True, blank=True)
    result = models.JSONField(_("return value"), null=True, blank=True)
    # What failed this attempt, as Django's TaskError: {"exception_class_path", "traceback"}.
    error = models.JSONField(_("error"), null=True, blank=True)
    created_at = models.DateTimeField(_("scheduled"), default=timezone.now)
    start_date = models.DateTimeField(_("started"), null=True, blank=True)
    end_date = models.DateTimeField(_("ended"), null=True, blank=True)
    worker = models.ForeignKey(
        "djangotasks.Worker",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="tasks",
        verbose_name=_("worker"),
    )
    pid = models.IntegerField(_("process id"), null=True, blank=True)
    progress_current = models.BigIntegerField(null=True, blank=True)
    progress_total = models.BigIntegerField(null=True, blank=True)
    progress_message = models.CharField(max_length=255, blank=True)
    log_size = models.BigIntegerField(_("log size"), default=0)
    dependencies = models.ManyToManyField(
        "self", symmetrical=False, related_name="dependents", blank=True
    )

    objects = TaskManager()

    class Meta:
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-priority", "id"], name="djangotasks_claim"),
            # Depth per queue (dashboard, taskd status) from the index alone.
            models.Index(fields=["status", "queue_name"], name="djangotasks_queue"),
            models.Index(fields=["content_type", "object_id"], name="djangotasks_object"),
            # Counts per status of the tasks a restricted admin user may see (their objects'
            # keys) are read from this index alone: the dashboard polls them.
            models.Index(
                fields=["status", "content_type", "object_id"], name="djangotasks_status_object"
            ),
            models.Index(fields=["name", "object_id", "archived"], name="djangotasks_history"),
            models.Index(fields=["end_date"], name="djangotasks_end_date"),
            models.Index(fields=["created_at"], name="djangotasks_created"),
        ]
        permissions = [
            ("run_task", "Can run tasks"),
            ("cancel_task", "Can cancel tasks"),
        ]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("target", None)
        return state

    def __str__(self) -> str:
        model = self.content_type.model if self.content_type else "object"
        target = f" of {model} #{self.object_id}" if self.object_id else ""
        if self.is_django_task:
            target = f" (result {self.object_id[:8]})"  # a uuid: its first block tells apart
        number = f"#{self.pk} " if self.pk else ""
        return f"{number}{self.label}{target} ({self.status})"

    @classmethod
    def placeholder(
        cls,
        definition: TaskDefinition,
        obj: models.Model | None,
        content_type: ContentType | None = None,
    ) -> Task:
        """The unsaved ``defined`` row of a task that has no live run on ``obj``: what is
        shown and returned until ``run()`` creates the row (reading never writes).

        A function task has no object (``obj`` is ignored); a method task needs a saved one.
        """
        if not definition.is_method:
            obj = None
        elif obj is None or obj.pk is None:
            raise ValueError(
                f"Save the {definition.model.__name__ if definition.model else 'object'} "
                f"before using its task {definition.label!r}: a task is stored against "
                f"the object's primary key."
            )
        elif content_type is None:
            content_type = content_types().get_for_model(obj)
        task = cls(
            name=definition.name,
            content_type=content_type if obj is not None else None,
            object_id=str(obj.pk) if obj is not None else "",
            status=Status.DEFINED,
            priority=definition.priority,
            queue_name=definition.queue,
        )
        task.set_target(obj)
        return task

    def set_target(self, obj: models.Model | None) -> None:
        """Give the task its object, already loaded (``target`` then costs no query)."""
        self.__dict__["target"] = obj

    # -- reading -----------------------------------------------------------------------

    @property
    def definition(self) -> TaskDefinition | None:
        try:
            return registry.get(self.name)
        except UnknownTask:
            return None

    @property
    def label(self) -> str:
        definition = self.definition
        return definition.label if definition else self.name

    @property
    def status_display(self) -> str:
        return str(self.get_status_display())

    def is_running(self) -> bool:
        return self.status in ACTIVE

    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def is_django_task(self) -> bool:
        """Enqueued through Django's tasks framework (it has arguments and a result id)."""
        return self.arguments is not None and self.content_type_id is None

    @property
    def call_arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """A Django task's ``(args, kwargs)``; empty for other tasks, and for parts of a row
        edited by hand into something else."""
        arguments = self.arguments if isinstance(self.arguments, dict) else {}
        args, kwargs = arguments.get("args"), arguments.get("kwargs")
        return (args if isinstance(args, list) else [], kwargs if isinstance(kwargs, dict) else {})

    @property
    def duration(self) -> timedelta | None:
        if self.start_date is None:
            return None
        end = self.end_date or timezone.now()
        return end - self.start_date

    @property
    def progress(self) -> Progress:
        return Progress(self.progress_current, self.progress_total, self.progress_message)

    @cached_property
    def target(self) -> models.Model | None:
        """The object this task runs on, or None (function task, or object deleted)."""
        if self.content_type is None:
            return None
        model = self.content_type.model_class()
        if model is None:
            return None  # the model was removed from the project
        try:
            return model._default_manager.get(pk=self.object_id)
        except (ObjectDoesNotExist, ValueError, ValidationError):
            return None  # gone, or an id that does not fit the key (a UUID, a number)

    @property
    def log(self) -> str:
        """Everything the task printed so far (stdout, stderr, logging, subprocesses)."""
        return self.read_log()[0]

    def read_log(self, offset: int = 0) -> tuple[str, int]:
        """The log from character ``offset`` on, and the offset to ask for next time.

        A live view keeps the returned offset and asks again: only new chunks are fetched.
        """
        from djangotasks.models.log import TaskLogChunk

        if self.pk is None:
            return "", 0
        chunks = list(
            TaskLogChunk.objects.filter(task_id=self.pk, end__gt=offset)
            .order_by("offset")
            .values_list("offset", "text")
        )
        if not chunks:
            return "", offset
        first_offset, first_text = chunks[0]
        parts = [first_text[max(0, offset - first_offset) :]]
        parts.extend(text for _offset, text in chunks[1:])
        last_offset, last_text = chunks[-1]
        return "".join(parts), last_offset + len(last_text)

    def complete_log(self) -> str:
        """This task's log preceded by the logs of its dependencies (each once, in order)."""
        seen: set[int] = set()
        sections: list[str] = []

        def add(task: Task) -> None:
            if task.pk in seen:
                return
            seen.add(task.pk)
            for dependency in task.dependencies.order_by("id"):
                add(dependency)
            sections.append(f"===== {task.label} (task #{task.pk}, {task.status}) =====\n")
            log = task.log
            sections.append(log if not log or log.endswith("\n") else log + "\n")

        if self.pk is None:
            return ""
        add(self)
        return "".join(sections)

    def archives(self) -> TaskQuerySet:
        """Earlier runs of the same task on the same object, newest first."""
        return Task.objects.filter(
            name=self.name, object_id=self.object_id, archived=True
        ).order_by("-created_at", "-id")

    # -- changing (every status change is a compare-and-set in transitions.py) -----------

    def run(self) -> Task:
        """Schedule this task (and its dependencies) and return the live Task.

        A task that is scheduled or running is returned unchanged; a finished one is
        archived and a new run is created. A task of Django's tasks framework is enqueued
        again with the same arguments, as a new result.
        """
        from djangotasks.models import scheduling

        definition = self.definition
        if definition is None:
            raise UnknownTask(self.name)
        if self.is_django_task:
            from djangotasks.backend import enqueue_again

            return enqueue_again(self)  # a new result, with the same arguments
        target = self.target if definition.is_method else None
        if definition.is_method and target is None:
            raise ValueError(f"Cannot run task #{self.pk} ({self.name}): its object is gone.")
        return scheduling.schedule(definition, target, known=self if self.pk is None else None)

    def cancel(self) -> Task:
        """Cancel: a scheduled task at once, a running one by killing its process group.

        Raises ``InvalidTransition`` for a task that never ran or already finished.
        """
        from djangotasks.models import transitions

        transitions.cancel(self)
        return self
