"""Public signals.

``task_started`` and ``task_completed`` are sent by the daemon, in the daemon process, with
``task`` and ``object`` (the task's target, or None). ``task_completed`` is sent on success,
failure and cancel alike; look at ``task.status``.

``task_status_changed`` is sent on every status change with ``task``, ``old_status`` and
``new_status``, in the process that made the change: the daemon for start, finish and
recovery; the caller's process for ``run()`` and ``cancel()``.
"""

from __future__ import annotations

from django.dispatch import Signal

task_started = Signal()
task_completed = Signal()
task_status_changed = Signal()
