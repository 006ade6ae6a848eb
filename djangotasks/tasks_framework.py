"""Django's tasks framework, wherever it comes from: ``django.tasks`` (Django >= 6.0) or the
``django-tasks`` backport on Django 5.2 (``pip install djangotasks[backport]``).

The two have the same API under different module names (and the backport names its
"invalid task" exception ``InvalidTaskError``); the backend and its results import it from
here, so one code serves both.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

if find_spec("django.tasks") is not None:
    from django.tasks import default_task_backend, task, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import (
        InvalidTask,
        InvalidTaskBackend,
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django.tasks.signals import task_enqueued, task_finished, task_started

    SOURCE = "django.tasks"
elif find_spec("django_tasks") is not None:
    from django_tasks import (  # type: ignore[no-redef]
        default_task_backend,
        task,
        task_backends,
    )
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef]
    from django_tasks.base import (  # type: ignore[no-redef]
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.exceptions import (  # type: ignore[no-redef]
        InvalidTaskBackendError as InvalidTaskBackend,
    )
    from django_tasks.exceptions import (  # type: ignore[no-redef]
        InvalidTaskError as InvalidTask,
    )
    from django_tasks.exceptions import (  # type: ignore[no-redef]
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django_tasks.signals import (  # type: ignore[no-redef]
        task_enqueued,
        task_finished,
        task_started,
    )

    SOURCE = "django_tasks"
else:
    raise ImportError(
        "djangotasks.backend needs Django's tasks framework: Django >= 6.0, or on Django 5.2 "
        "the django-tasks backport (pip install 'djangotasks[backport]')."
    )

if TYPE_CHECKING:
    # Generic in the stubs, not at run time: for annotations only.
    AnyTask = Task[Any, Any]
    AnyResult = TaskResult[Any, Any]

__all__ = [
    "SOURCE",
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultMismatch",
    "TaskResultStatus",
    "default_task_backend",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
