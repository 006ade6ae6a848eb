"""Inside a task process: calling a ``django.tasks`` task with its stored arguments.

The arguments were checked at ``enqueue()``; what is read back is still checked for shape,
as a row may have been edited by hand. The return value is stored by this process itself,
before it exits (so the daemon never holds a task's return value in memory), and only if it
round-trips through JSON.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

from djangotasks.jsonvalues import to_json

if TYPE_CHECKING:
    from djangotasks.models import Task
    from djangotasks.registry import TaskDefinition


def call(task: Task, definition: TaskDefinition) -> Any:
    """Run the task's function with its arguments (and context); return what it returns."""
    from django.db import connections

    arguments = task.arguments if isinstance(task.arguments, dict) else {}
    args, kwargs = arguments.get("args", []), arguments.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise TypeError(f"Task #{task.pk} has malformed stored arguments: {arguments!r:.200}")
    django_task = definition.django_task
    if django_task.takes_context:
        from djangotasks import results
        from djangotasks.tasks_framework import TaskContext

        # Its attempt counts the earlier attempts' rows: one query, then no connection held.
        try:
            result = results.to_result(results.attempts_of(task.object_id) or [task])
        finally:
            connections.close_all()
        args = [TaskContext(task_result=result), *args]
    func = django_task.func
    if inspect.iscoroutinefunction(func):
        return asyncio.run(func(*args, **kwargs))
    return func(*args, **kwargs)


def store_return_value(task: Task, value: Any) -> None:
    """Store what the task returned; ``NotJSON`` (the task's error) if it cannot be."""
    from django.db import connections

    from djangotasks.models import Task
    from djangotasks.statuses import ACTIVE

    value = to_json(value, "A task's return value", "the return value")
    if value is None:
        return  # what an empty column reads as: no write, no connection
    try:
        Task.objects.filter(pk=task.pk, status__in=ACTIVE).update(result=value)
    finally:
        connections.close_all()
