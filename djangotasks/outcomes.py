"""How a finished task ended, in one word: the label of metrics, alerts and daemon logs.

The status says whether it succeeded; an unsuccessful task's error class (Django's
``TaskError.exception_class_path``, written by the daemon) says how it failed. A bounded
set of words, whatever a task or a database row holds: a label never carries task data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from djangotasks import exceptions
from djangotasks.statuses import Status

if TYPE_CHECKING:
    from djangotasks.models import Task

SUCCESSFUL = "successful"
FAILED = "failed"
TIMED_OUT = "timed_out"
LOST = "lost"
CANCELLED = "cancelled"
OUTCOMES = (SUCCESSFUL, FAILED, TIMED_OUT, LOST, CANCELLED)
# The outcomes that tell people something went wrong (alerts); a cancel was asked for.
BAD = frozenset({FAILED, TIMED_OUT, LOST})

_BY_ERROR = {
    f"{cls.__module__}.{cls.__qualname__}": outcome
    for cls, outcome in ((exceptions.TaskTimedOut, TIMED_OUT), (exceptions.WorkerLost, LOST))
}


def outcome(task: Task) -> str | None:
    """The outcome of a finished ``task``; None while it has not finished."""
    if task.status == Status.SUCCESSFUL:
        return SUCCESSFUL
    if task.status == Status.CANCELLED:
        return CANCELLED
    if task.status != Status.UNSUCCESSFUL:
        return None
    error = task.error if isinstance(task.error, dict) else {}
    return _BY_ERROR.get(str(error.get("exception_class_path", "")), FAILED)
