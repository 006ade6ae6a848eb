from __future__ import annotations

from djangotasks.models.dashboard import Dashboard
from djangotasks.models.log import TaskLogChunk
from djangotasks.models.schedule import Schedule, ScheduleTick
from djangotasks.models.tally import Tally
from djangotasks.models.task import Progress, Task, TaskQuerySet
from djangotasks.models.worker import Worker

__all__ = [
    "Dashboard",
    "Progress",
    "Schedule",
    "ScheduleTick",
    "Tally",
    "Task",
    "TaskLogChunk",
    "TaskQuerySet",
    "Worker",
]
