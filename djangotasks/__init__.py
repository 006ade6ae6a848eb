"""Long, heavy batch tasks for Django: one OS process per task, watched live in the admin."""

from __future__ import annotations

from djangotasks.current import current_task
from djangotasks.decorators import task

__all__ = ["current_task", "task"]
__version__ = "0.1.0"
