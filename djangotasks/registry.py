"""Which code may run as a task: only what ``@task`` registered, looked up by name.

The daemon resolves the name stored in a task row through this registry and nothing else:
it never imports a path read from the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.models import Model

    from djangotasks.models import Task


class UnknownTask(LookupError):
    """No ``@task`` is registered under this name (a typo, or code removed since)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"No @task is registered as {name!r}. Registered tasks are the @task methods of "
            "installed models and the @task functions of imported modules (each app's "
            "tasks.py is imported automatically)."
        )
        self.name = name


@dataclass(frozen=True)
class ScheduleSpec:
    """``@task(schedule=...)``: when a function task runs by itself (see models.schedule)."""

    cron: str = ""
    interval: timedelta | None = None
    time_zone: str | None = None  # None: settings.TIME_ZONE
    missed: str = "latest"
    missed_within: timedelta = timedelta(hours=1)
    overlap: str = "skip"


@dataclass(frozen=True)
class TaskDefinition:
    """One registered task: a parameterless model method, a module-level function, or a
    ``django.tasks`` task of the djangotasks backend."""

    name: str
    func: Callable[..., Any]
    label: str
    model: type[Model] | None = None
    attname: str | None = None
    dependencies: tuple[str, ...] = ()
    timeout: float | None = None
    memory_limit: int | None = None
    priority: int = 0
    retries: int = 0
    retry_delay: float = 10.0
    queue: str = "default"
    # The ``django.tasks`` Task of a task enqueued through the djangotasks backend; its rows
    # carry their arguments, and each enqueue is a run of its own.
    django_task: Any = None
    schedule: ScheduleSpec | None = None

    @property
    def is_method(self) -> bool:
        return self.model is not None

    @property
    def takes_arguments(self) -> bool:
        """A ``django.tasks`` task: it runs only through ``enqueue()``, with its arguments."""
        return self.django_task is not None

    def current(self, obj: Model | None = None) -> Task:
        """The live task of this definition for ``obj`` (unsaved, ``defined``, if none)."""
        from djangotasks.models import Task

        return Task.objects.current(self, obj)

    def dependency_definitions(self) -> list[TaskDefinition]:
        return [registry.get(name) for name in self.dependencies]


class Registry:
    def __init__(self) -> None:
        self._definitions: dict[str, TaskDefinition] = {}

    def register(self, definition: TaskDefinition) -> None:
        self._definitions[definition.name] = definition
        self._check_acyclic(definition.name)

    def get(self, name: str) -> TaskDefinition:
        try:
            return self._definitions[name]
        except KeyError:
            raise UnknownTask(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(list(self._definitions.values()))

    def for_model(self, model: type[Model]) -> list[TaskDefinition]:
        """The @task methods of ``model`` in definition order."""
        return [d for d in self if d.model is model]

    def _check_acyclic(self, start: str) -> None:
        # Dependencies named by string may point forward, so a cycle is possible; reject it
        # when the last definition of the cycle is registered (that is, at import time).
        path: list[str] = []

        def visit(name: str) -> None:
            if name in path:
                cycle = " -> ".join([*path[path.index(name) :], name])
                raise TypeError(f"@task dependency cycle: {cycle}")
            definition = self._definitions.get(name)
            if definition is None:
                return
            path.append(name)
            for dependency in definition.dependencies:
                visit(dependency)
            path.pop()

        try:
            visit(start)
        except TypeError:
            del self._definitions[start]
            raise


registry = Registry()
