from __future__ import annotations

from djangotasks.registry import UnknownTask


class InvalidTransition(ValueError):
    """The task is not in a status that allows this (e.g. cancelling a finished task)."""


# How a task ended when its own code raised nothing: the exception class paths that the
# ``django.tasks`` backend reports in ``TaskResult.errors`` (its ``TaskError``), so that code
# can tell a cancel from a timeout from a crash. They are never raised inside a task.


class TaskEnded(Exception):
    """Base class: the task did not finish by returning or raising."""


class TaskCancelled(TaskEnded):
    """Someone cancelled the task (or the daemon was shut down while it ran)."""


class TaskTimedOut(TaskEnded):
    """The task ran longer than its timeout and was killed."""


class TaskMemoryLimitExceeded(TaskEnded):
    """The task ran out of the memory its limit allows."""


class TaskCrashed(TaskEnded):
    """The task's process died without an exception: a signal, ``os._exit``, a fault."""


class WorkerLost(TaskEnded):
    """The daemon running the task stopped beating; another daemon recovered the task."""


class DependencyFailed(TaskEnded):
    """A task this one depends on failed or was cancelled."""


class TaskFailed(TaskEnded):
    """The task failed for a reason recorded only as text (see the task's reason)."""


class NotJSON(TypeError):
    """A task argument or return value that does not round-trip through JSON."""


__all__ = [
    "DependencyFailed",
    "InvalidTransition",
    "NotJSON",
    "TaskCancelled",
    "TaskCrashed",
    "TaskEnded",
    "TaskFailed",
    "TaskMemoryLimitExceeded",
    "TaskTimedOut",
    "UnknownTask",
    "WorkerLost",
]
