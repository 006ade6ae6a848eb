"""``current_task``: the task this process runs, usable as an object and when called.

Inside a task process ``current_task`` is truthy, ``current_task()`` returns the ``Task`` and
``current_task.set_progress(...)`` reports progress to the daemon. Outside a task it is falsy,
``current_task()`` returns None and ``set_progress`` does nothing, so task code can also be
called directly (in a shell or a test).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from djangotasks.models import Task

# A task may call set_progress() for every row of a million-row import; the daemon only needs
# a few updates per second, so the child sends at most one message per interval.
PROGRESS_SEND_INTERVAL = 0.2


class CurrentTask:
    def __init__(self) -> None:
        self._task: Task | None = None
        self._control_fd: int | None = None
        self._last_sent = 0.0
        self._pending: dict[str, Any] | None = None

    def _activate(self, task: Task, control_fd: int | None) -> None:
        """Called once by the task process before the task's code starts."""
        self._task = task
        self._control_fd = control_fd

    def __call__(self) -> Task | None:
        return self._task

    def __bool__(self) -> bool:
        return self._task is not None

    def is_running(self) -> bool:
        return self._task is not None

    @property
    def id(self) -> int | None:
        return self._task.pk if self._task is not None else None

    def set_progress(self, current: int, total: int | None = None, message: str = "") -> None:
        """Report progress: ``current`` of ``total`` (None when unknown), with a short message."""
        if self._task is None:
            return
        current, total = int(current), None if total is None else int(total)
        self._task.progress_current = current
        self._task.progress_total = total
        self._task.progress_message = str(message)[:255]
        self._pending = {"current": current, "total": total, "message": str(message)[:255]}
        now = time.monotonic()
        if now - self._last_sent >= PROGRESS_SEND_INTERVAL or (
            total is not None and current >= total
        ):
            self.flush()

    def flush(self) -> None:
        if self._pending is None or self._control_fd is None:
            return
        line = json.dumps({"progress": self._pending}).encode() + b"\n"
        self._pending = None
        self._last_sent = time.monotonic()
        try:
            os.write(self._control_fd, line)
        except OSError:
            # The daemon is gone (it will be recovered as lost); progress is not worth a crash.
            self._control_fd = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or self._task is None:
            raise AttributeError(name)
        return getattr(self._task, name)

    def __repr__(self) -> str:
        return f"<current_task {self._task!r}>" if self._task else "<current_task: none>"


current_task = CurrentTask()
